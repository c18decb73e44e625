"""Hand-written PTX kernels for the runtime tests and the launch benchmark."""

HEADER = ".version 7.0\n.target sm_80\n.address_size 64\n"

# y[i] = a * x[i] for i < n
SCALE = HEADER + r"""
.visible .entry scale(
	.param .u64 scale_param_0,
	.param .u64 scale_param_1,
	.param .f32 scale_param_2,
	.param .u32 scale_param_3
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<6>;
	.reg .b64 %rd<8>;
	.reg .f32 %f<4>;

	ld.param.u64 %rd1, [scale_param_0];
	ld.param.u64 %rd2, [scale_param_1];
	ld.param.f32 %f1, [scale_param_2];
	ld.param.u32 %r1, [scale_param_3];
	mov.u32 %r2, %ctaid.x;
	mov.u32 %r3, %ntid.x;
	mov.u32 %r4, %tid.x;
	mad.lo.s32 %r5, %r2, %r3, %r4;
	setp.ge.s32 %p1, %r5, %r1;
	@%p1 bra $L_1;
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mul.wide.s32 %rd5, %r5, 4;
	add.s64 %rd6, %rd3, %rd5;
	add.s64 %rd7, %rd4, %rd5;
	ld.global.f32 %f2, [%rd6];
	mul.f32 %f3, %f2, %f1;
	st.global.f32 [%rd7], %f3;
$L_1:
	ret;
}
"""
SCALE_PARAMS = ["x: Ptr[f32]", "y: Ptr[f32] writable", "a: f32", "n: i32"]

# y[i] = x[i] for 16-bit elements (bf16 bits move unchanged)
COPY16 = HEADER + r"""
.visible .entry copy16(
	.param .u64 copy16_param_0,
	.param .u64 copy16_param_1,
	.param .u32 copy16_param_2
)
{
	.reg .pred %p<2>;
	.reg .b16 %rs<2>;
	.reg .b32 %r<6>;
	.reg .b64 %rd<8>;

	ld.param.u64 %rd1, [copy16_param_0];
	ld.param.u64 %rd2, [copy16_param_1];
	ld.param.u32 %r1, [copy16_param_2];
	mov.u32 %r2, %ctaid.x;
	mov.u32 %r3, %ntid.x;
	mov.u32 %r4, %tid.x;
	mad.lo.s32 %r5, %r2, %r3, %r4;
	setp.ge.s32 %p1, %r5, %r1;
	@%p1 bra $L_1;
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mul.wide.s32 %rd5, %r5, 2;
	add.s64 %rd6, %rd3, %rd5;
	add.s64 %rd7, %rd4, %rd5;
	ld.global.u16 %rs1, [%rd6];
	st.global.u16 [%rd7], %rs1;
$L_1:
	ret;
}
"""
COPY16_PARAMS = ["x: Ptr[bf16]", "y: Ptr[bf16] writable", "n: i32"]

# out[j] = n-1-j through dynamic shared memory of n words (bar.sync between write and read)
DSMEM = HEADER + r"""
.extern .shared .align 16 .b8 kaio_dyn_smem[];

.visible .entry dsmem(
	.param .u64 dsmem_param_0,
	.param .u32 dsmem_param_1
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<8>;
	.reg .b64 %rd<4>;

	ld.param.u64 %rd1, [dsmem_param_0];
	ld.param.u32 %r1, [dsmem_param_1];
	cvta.to.global.u64 %rd1, %rd1;
	mov.u32 %r3, %ntid.x;
	mov.u32 %r7, kaio_dyn_smem;
	mov.u32 %r2, %tid.x;
$L_w:
	setp.ge.u32 %p1, %r2, %r1;
	@%p1 bra $L_wd;
	shl.b32 %r4, %r2, 2;
	add.u32 %r5, %r7, %r4;
	st.shared.u32 [%r5], %r2;
	add.u32 %r2, %r2, %r3;
	bra $L_w;
$L_wd:
	bar.sync 0;
	mov.u32 %r2, %tid.x;
$L_r:
	setp.ge.u32 %p1, %r2, %r1;
	@%p1 bra $L_rd;
	sub.u32 %r6, %r1, %r2;
	sub.u32 %r6, %r6, 1;
	shl.b32 %r4, %r6, 2;
	add.u32 %r5, %r7, %r4;
	ld.shared.u32 %r6, [%r5];
	mul.wide.u32 %rd2, %r2, 4;
	add.s64 %rd3, %rd1, %rd2;
	st.global.u32 [%rd3], %r6;
	add.u32 %r2, %r2, %r3;
	bra $L_r;
$L_rd:
	ret;
}
"""
DSMEM_PARAMS = ["out: Ptr[u32] writable", "n: u32"]

# At most 128 threads per block (.maxntid): launching 256 must be a LaunchError.
MAXNTID = HEADER + r"""
.visible .entry small_block(
	.param .u64 small_block_param_0
)
.maxntid 128, 1, 1
{
	ret;
}
"""
MAXNTID_PARAMS = ["x: Ptr[f32]"]

# Not PTX the JIT accepts: the error log must reach the user.
BAD = HEADER + r"""
.visible .entry broken(
	.param .u64 broken_param_0
)
{
	.reg .b32 %r<2>;
	frobnicate.u32 %r1, %r1;
	ret;
}
"""
BAD_PARAMS = ["x: Ptr[f32]"]
