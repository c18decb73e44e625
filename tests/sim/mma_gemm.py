"""A tensor-core GEMM in hand-written PTX (cp.async -> ldmatrix -> mma), used by tests and timing.

C[M,N] (f32) = A[M,K] (f16, row-major) @ B where B is given transposed: Bt[N,K] (f16).
Blocks of 4 warps compute 32x32 tiles; each warp a 16x16 tile (two m16n8k16 mma per k-step).
"""

from simkit import kernel, load_ptrs


def gemm_ptx(M: int, N: int, K: int) -> str:
    body = load_ptrs(3) + f"""
	mov.u32 %r1, %tid.x;
	mov.u32 %r2, %ctaid.x;          // bn
	mov.u32 %r3, %ctaid.y;          // bm
	shr.u32 %r4, %r1, 5;            // warp
	and.b32 %r5, %r1, 31;           // lane
	shr.u32 %r6, %r4, 1;            // wm
	and.b32 %r7, %r4, 1;            // wn
	mov.u32 %r8, As;
	mov.u32 %r9, Bs;
	// cp.async source/destination for this thread: chunk c = tid % 64, row c/2, 8-col half c%2
	and.b32 %r10, %r1, 63;
	shr.u32 %r11, %r10, 1;
	and.b32 %r12, %r10, 1;
	shl.b32 %r13, %r11, 5;
	shl.b32 %r14, %r12, 4;
	add.s32 %r13, %r13, %r14;       // byte offset in tile
	setp.lt.u32 %p1, %r1, 64;
	selp.b32 %r15, %r8, %r9, %p1;
	add.s32 %r16, %r15, %r13;       // shared dst
	selp.b32 %r17, %r3, %r2, %p1;   // bm or bn
	shl.b32 %r17, %r17, 5;
	add.s32 %r17, %r17, %r11;       // global row
	mul.lo.s32 %r18, %r17, {K};
	shl.b32 %r19, %r12, 3;
	add.s32 %r18, %r18, %r19;       // element index at k0 = 0
	mul.wide.u32 %rd5, %r18, 2;
	selp.b64 %rd6, %rd0, %rd1, %p1;
	add.s64 %rd7, %rd6, %rd5;       // global src
	// ldmatrix addresses
	and.b32 %r20, %r5, 15;
	shl.b32 %r21, %r6, 4;
	add.s32 %r20, %r20, %r21;       // A row
	shr.u32 %r22, %r5, 4;
	shl.b32 %r22, %r22, 4;          // A col byte (0 or 16)
	shl.b32 %r23, %r20, 5;
	add.s32 %r23, %r23, %r22;
	add.s32 %r24, %r8, %r23;        // A ldmatrix addr
	and.b32 %r25, %r5, 7;
	shr.u32 %r26, %r5, 4;
	shl.b32 %r26, %r26, 3;
	add.s32 %r25, %r25, %r26;
	shl.b32 %r27, %r7, 4;
	add.s32 %r25, %r25, %r27;       // B row (n)
	shr.u32 %r28, %r5, 3;
	and.b32 %r28, %r28, 1;
	shl.b32 %r28, %r28, 4;          // B col byte
	shl.b32 %r29, %r25, 5;
	add.s32 %r29, %r29, %r28;
	add.s32 %r30, %r9, %r29;        // B ldmatrix addr
	mov.f32 %f0, 0f00000000;
	mov.f32 %f1, 0f00000000;
	mov.f32 %f2, 0f00000000;
	mov.f32 %f3, 0f00000000;
	mov.f32 %f4, 0f00000000;
	mov.f32 %f5, 0f00000000;
	mov.f32 %f6, 0f00000000;
	mov.f32 %f7, 0f00000000;
	mov.u32 %r31, 0;
$L_loop:
	// @ gemm.py:20  stage the k-tile
	cp.async.cg.shared.global [%r16], [%rd7], 16;
	cp.async.commit_group;
	cp.async.wait_group 0;
	bar.sync 0;
	// @ gemm.py:22  fragments + mma
	ldmatrix.sync.aligned.m8n8.x4.shared.b16 {{%r40, %r41, %r42, %r43}}, [%r24];
	ldmatrix.sync.aligned.m8n8.x4.shared.b16 {{%r44, %r45, %r46, %r47}}, [%r30];
	mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {{%f0, %f1, %f2, %f3}}, {{%r40, %r41, %r42, %r43}}, {{%r44, %r45}}, {{%f0, %f1, %f2, %f3}};
	mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {{%f4, %f5, %f6, %f7}}, {{%r40, %r41, %r42, %r43}}, {{%r46, %r47}}, {{%f4, %f5, %f6, %f7}};
	bar.sync 0;
	add.s64 %rd7, %rd7, 32;
	add.s32 %r31, %r31, 16;
	setp.lt.s32 %p2, %r31, {K};
	@%p2 bra $L_loop;
	// @ gemm.py:30  store C
	shr.u32 %r50, %r5, 2;           // g
	and.b32 %r51, %r5, 3;           // t
	shl.b32 %r52, %r3, 5;
	shl.b32 %r53, %r6, 4;
	add.s32 %r52, %r52, %r53;
	add.s32 %r52, %r52, %r50;       // row
	shl.b32 %r54, %r2, 5;
	shl.b32 %r55, %r7, 4;
	add.s32 %r54, %r54, %r55;
	shl.b32 %r56, %r51, 1;
	add.s32 %r54, %r54, %r56;       // col
	mad.lo.s32 %r57, %r52, {N}, %r54;
	mul.wide.u32 %rd8, %r57, 4;
	add.s64 %rd9, %rd2, %rd8;
	st.global.v2.f32 [%rd9], {{%f0, %f1}};
	st.global.v2.f32 [%rd9+32], {{%f4, %f5}};
	st.global.v2.f32 [%rd9+{8 * N * 4}], {{%f2, %f3}};
	st.global.v2.f32 [%rd9+{8 * N * 4 + 32}], {{%f6, %f7}};
	ret;
"""
    decls = "\t.shared .align 16 .b8 As[1024];\n\t.shared .align 16 .b8 Bs[1024];\n"
    return kernel(body, params=("u64", "u64", "u64"), name="gemm", decls=decls)
