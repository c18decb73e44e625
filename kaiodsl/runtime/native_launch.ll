; kaiodsl's native launch tier (loaded by kaiodsl/runtime/native.py, which documents it).
;
; PyObject *kaio_launch(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
;   self: the descriptor (a ctypes u64 array; its buffer pointer is at offset 16)
;   args: grid (3-tuple), block (3-tuple), arguments (tuple), smem (int), stream (None or int)
; Returns None after a launch, NotImplemented when it launched nothing (no exception set).
; Names between two at-signs are constants filled in at load time: C-API entry points, object addresses,
; descriptor indices. An object's type is read at offset 8 (PyObject: refcount, type).
declare float @llvm.fabs.f32(float)
declare double @llvm.fabs.f64(double)

define ptr @kaio_launch(ptr %self, ptr %args, i64 %nargs) {
entry:
  %vc = alloca [2 x ptr], align 8
  %self_buf = getelementptr i8, ptr %self, i64 16  ; self is the descriptor's ctypes array: its b_ptr
  %d = load ptr, ptr %self_buf
  %nok = icmp eq i64 %nargs, 5
  br i1 %nok, label %unpack, label %ni

unpack:
  %grid = load ptr, ptr %args
  %p1 = getelementptr ptr, ptr %args, i64 1
  %block = load ptr, ptr %p1
  %p2 = getelementptr ptr, ptr %args, i64 2
  %targs = load ptr, ptr %p2
  %p3 = getelementptr ptr, ptr %args, i64 3
  %smem = load ptr, ptr %p3
  %p4 = getelementptr ptr, ptr %args, i64 4
  %stream = load ptr, ptr %p4
  br label %check_tuple

check_tuple:
  %tt_p = getelementptr i8, ptr %targs, i64 8
  %tt = load ptr, ptr %tt_p
  %is_tuple = icmp eq ptr %tt, inttoptr (i64 @TupleType@ to ptr)
  br i1 %is_tuple, label %check_size, label %ni

check_size:
  %size = call i64 inttoptr (i64 @TupleSize@ to ptr)(ptr %targs)
  %n_p = getelementptr i64, ptr %d, i64 @H_N@
  %nn = load i64, ptr %n_p
  %size_ok = icmp eq i64 %size, %nn
  br i1 %size_ok, label %loop_head, label %ni

loop_head:
  %has_params = icmp sgt i64 %nn, 0
  %buf_p = getelementptr i64, ptr %d, i64 @H_BUF@
  %buf_i = load i64, ptr %buf_p
  %buf = inttoptr i64 %buf_i to ptr
  %ord_p = getelementptr i64, ptr %d, i64 @H_ORD@
  %ord = load i64, ptr %ord_p
  br i1 %has_params, label %loop, label %after

loop:
  %i = phi i64 [0, %loop_head], [%inext, %next]
  %saw = phi i64 [0, %loop_head], [%saw_next, %next]
  %a = call ptr inttoptr (i64 @TupleGetItem@ to ptr)(ptr %targs, i64 %i)
  %aty_p = getelementptr i8, ptr %a, i64 8
  %aty = load ptr, ptr %aty_p
  %pbase = mul i64 %i, 4
  %pk = add i64 %pbase, @HEADER@
  %kind_p = getelementptr i64, ptr %d, i64 %pk
  %kind = load i64, ptr %kind_p
  %pa_i = add i64 %pk, @P_A@
  %pa_p = getelementptr i64, ptr %d, i64 %pa_i
  %pa = load i64, ptr %pa_p
  %pb_i = add i64 %pk, @P_B@
  %pb_p = getelementptr i64, ptr %d, i64 %pb_i
  %pb = load i64, ptr %pb_p
  %slot = getelementptr i64, ptr %buf, i64 %i
  switch i64 %kind, label %ni [
    i64 @PTR@, label %k_ptr
    i64 @INT@, label %k_int
    i64 @U64@, label %k_u64
    i64 @F32@, label %k_f32
    i64 @F64@, label %k_f64
  ]

; ---- pointer: a torch.Tensor (exact type) or a kaiodsl DeviceArray -------------------
k_ptr:
  %tensor_ty_p = getelementptr i64, ptr %d, i64 @H_TENSOR_TYPE@
  %tensor_ty = load ptr, ptr %tensor_ty_p
  %is_tensor = icmp eq ptr %aty, %tensor_ty
  br i1 %is_tensor, label %t_dtype, label %da_check

t_dtype:  ; getter(tensor, closure): torch's own C getter, or PyObject_GetAttr(tensor, "dtype")
  %dtg_p = getelementptr i64, ptr %d, i64 @H_DT_GET@
  %dtg = load ptr, ptr %dtg_p
  %dta_p = getelementptr i64, ptr %d, i64 @H_DT_ARG@
  %dta = load ptr, ptr %dta_p
  %t_dt = call ptr %dtg(ptr %a, ptr %dta)
  %t_dt_null = icmp eq ptr %t_dt, null
  br i1 %t_dt_null, label %ni, label %t_dtype2

t_dtype2:
  %want_dt = inttoptr i64 %pa to ptr
  %dt_ok = icmp eq ptr %t_dt, %want_dt
  call void inttoptr (i64 @DecRef@ to ptr)(ptr %t_dt)
  br i1 %dt_ok, label %t_dev, label %ni

t_dev:
  %single_p = getelementptr i64, ptr %d, i64 @H_SINGLE_GPU@
  %single = load i64, ptr %single_p
  %is_single = icmp ne i64 %single, 0
  br i1 %is_single, label %t_is_cuda, label %t_get_device

t_is_cuda:
  %cug_p = getelementptr i64, ptr %d, i64 @H_CU_GET@
  %cug = load ptr, ptr %cug_p
  %cua_p = getelementptr i64, ptr %d, i64 @H_CU_ARG@
  %cua = load ptr, ptr %cua_p
  %t_cu = call ptr %cug(ptr %a, ptr %cua)
  %t_cu_null = icmp eq ptr %t_cu, null
  br i1 %t_cu_null, label %ni, label %t_is_cuda2

t_is_cuda2:
  %cu_ok = icmp eq ptr %t_cu, inttoptr (i64 @True@ to ptr)
  call void inttoptr (i64 @DecRef@ to ptr)(ptr %t_cu)
  br i1 %cu_ok, label %t_ptr, label %ni

t_get_device:
  store ptr %a, ptr %vc
  %t_gd = call ptr inttoptr (i64 @VectorcallMethod@ to ptr)(ptr inttoptr (i64 @S_get_device@ to ptr), ptr %vc, i64 1, ptr null)
  %t_gd_null = icmp eq ptr %t_gd, null
  br i1 %t_gd_null, label %ni, label %t_get_device2

t_get_device2:
  %gd = call i64 inttoptr (i64 @AsLongLong@ to ptr)(ptr %t_gd)
  call void inttoptr (i64 @DecRef@ to ptr)(ptr %t_gd)
  %gd_ok = icmp eq i64 %gd, %ord
  br i1 %gd_ok, label %t_ptr, label %ni

t_ptr:  ; torch's METH_NOARGS data_ptr C function when known, else a method call
  %dpf_p = getelementptr i64, ptr %d, i64 @H_DP_FN@
  %dpf = load ptr, ptr %dpf_p
  %dp_direct = icmp ne ptr %dpf, null
  br i1 %dp_direct, label %t_ptr_direct, label %t_ptr_method

t_ptr_direct:
  %t_dp1 = call ptr %dpf(ptr %a, ptr null)
  br label %t_ptr_join

t_ptr_method:
  store ptr %a, ptr %vc
  %t_dp2 = call ptr inttoptr (i64 @VectorcallMethod@ to ptr)(ptr inttoptr (i64 @S_data_ptr@ to ptr), ptr %vc, i64 1, ptr null)
  br label %t_ptr_join

t_ptr_join:
  %t_dp = phi ptr [%t_dp1, %t_ptr_direct], [%t_dp2, %t_ptr_method]
  %t_dp_null = icmp eq ptr %t_dp, null
  br i1 %t_dp_null, label %ni, label %t_ptr2

t_ptr2:
  %tp = call i64 inttoptr (i64 @AsUnsignedLongLong@ to ptr)(ptr %t_dp)
  call void inttoptr (i64 @DecRef@ to ptr)(ptr %t_dp)
  %tp_bad = icmp eq i64 %tp, -1
  br i1 %tp_bad, label %ni, label %t_store

t_store:
  store i64 %tp, ptr %slot
  br label %next

da_check:
  %da_ty_p = getelementptr i64, ptr %d, i64 @H_DA_TYPE@
  %da_ty = load ptr, ptr %da_ty_p
  %is_da = icmp eq ptr %aty, %da_ty
  br i1 %is_da, label %da_st, label %ni

da_st:
  %d_st = call ptr inttoptr (i64 @GetAttr@ to ptr)(ptr %a, ptr inttoptr (i64 @S_scalar_type@ to ptr))
  %d_st_null = icmp eq ptr %d_st, null
  br i1 %d_st_null, label %ni, label %da_st2

da_st2:
  %want_st = inttoptr i64 %pb to ptr
  %st_ok = icmp eq ptr %d_st, %want_st
  call void inttoptr (i64 @DecRef@ to ptr)(ptr %d_st)
  br i1 %st_ok, label %da_dev, label %ni

da_dev:
  %d_dv = call ptr inttoptr (i64 @GetAttr@ to ptr)(ptr %a, ptr inttoptr (i64 @S_device@ to ptr))
  %d_dv_null = icmp eq ptr %d_dv, null
  br i1 %d_dv_null, label %ni, label %da_dev2

da_dev2:
  %dv_ty_p = getelementptr i8, ptr %d_dv, i64 8
  %dv_ty = load ptr, ptr %dv_ty_p
  %dv_is_int = icmp eq ptr %dv_ty, inttoptr (i64 @LongType@ to ptr)
  %dv = call i64 inttoptr (i64 @AsLongLong@ to ptr)(ptr %d_dv)
  call void inttoptr (i64 @DecRef@ to ptr)(ptr %d_dv)
  %dv_same = icmp eq i64 %dv, %ord
  %dv_ok = and i1 %dv_is_int, %dv_same
  br i1 %dv_ok, label %da_ptr, label %ni

da_ptr:
  %d_p = call ptr inttoptr (i64 @GetAttr@ to ptr)(ptr %a, ptr inttoptr (i64 @S_ptr@ to ptr))
  %d_p_null = icmp eq ptr %d_p, null
  br i1 %d_p_null, label %ni, label %da_ptr2

da_ptr2:
  %dp = call i64 inttoptr (i64 @AsUnsignedLongLong@ to ptr)(ptr %d_p)
  call void inttoptr (i64 @DecRef@ to ptr)(ptr %d_p)
  %dp_bad = icmp eq i64 %dp, -1
  br i1 %dp_bad, label %ni, label %da_store

da_store:
  store i64 %dp, ptr %slot
  br label %next

; ---- integer scalars: an exact int in [lo, hi] -----------------------------------------
k_int:
  %int_ok = icmp eq ptr %aty, inttoptr (i64 @LongType@ to ptr)
  br i1 %int_ok, label %k_int2, label %ni

k_int2:
  %iv = call i64 inttoptr (i64 @AsLongLong@ to ptr)(ptr %a)
  %iv_ge = icmp sge i64 %iv, %pa
  %iv_le = icmp sle i64 %iv, %pb
  %iv_in = and i1 %iv_ge, %iv_le
  %iv_m1 = icmp eq i64 %iv, -1
  br i1 %iv_m1, label %k_int_m1, label %k_int3

k_int_m1:  ; -1 is also the error return (overflow): ask whether an exception is set
  %iv_err = call ptr inttoptr (i64 @ErrOccurred@ to ptr)()
  %iv_noerr = icmp eq ptr %iv_err, null
  %iv_ok2 = and i1 %iv_noerr, %iv_in
  br i1 %iv_ok2, label %k_int_store, label %ni

k_int3:
  br i1 %iv_in, label %k_int_store, label %ni

k_int_store:
  store i64 %iv, ptr %slot
  br label %next

k_u64:
  %u_ok = icmp eq ptr %aty, inttoptr (i64 @LongType@ to ptr)
  br i1 %u_ok, label %k_u64b, label %ni

k_u64b:
  %uv = call i64 inttoptr (i64 @AsUnsignedLongLong@ to ptr)(ptr %a)
  %uv_m1 = icmp eq i64 %uv, -1
  br i1 %uv_m1, label %k_u64_m1, label %k_u64_store

k_u64_m1:
  %uv_err = call ptr inttoptr (i64 @ErrOccurred@ to ptr)()
  %uv_noerr = icmp eq ptr %uv_err, null
  br i1 %uv_noerr, label %k_u64_store, label %ni

k_u64_store:
  store i64 %uv, ptr %slot
  br label %next

; ---- float scalars: an exact float; f32 overflow is left to the Python tier (it raises) --
k_f32:
  %f_ok = icmp eq ptr %aty, inttoptr (i64 @FloatType@ to ptr)
  br i1 %f_ok, label %k_f32b, label %ni

k_f32b:
  %fd = call double inttoptr (i64 @AsDouble@ to ptr)(ptr %a)
  %ff = fptrunc double %fd to float
  %ffa = call float @llvm.fabs.f32(float %ff)
  %fda = call double @llvm.fabs.f64(double %fd)
  %f_inf = fcmp oeq float %ffa, 0x7FF0000000000000
  %d_inf = fcmp oeq double %fda, 0x7FF0000000000000
  %d_fin = xor i1 %d_inf, true
  %f_over = and i1 %f_inf, %d_fin
  br i1 %f_over, label %ni, label %k_f32_store

k_f32_store:
  %fbits = bitcast float %ff to i32
  %fbits64 = zext i32 %fbits to i64
  store i64 %fbits64, ptr %slot
  br label %next

k_f64:
  %f64_ok = icmp eq ptr %aty, inttoptr (i64 @FloatType@ to ptr)
  br i1 %f64_ok, label %k_f64b, label %ni

k_f64b:
  %f64v = call double inttoptr (i64 @AsDouble@ to ptr)(ptr %a)
  store double %f64v, ptr %slot
  br label %next

next:
  %saw_next = phi i64 [1, %t_store], [%saw, %da_store], [%saw, %k_int_store],
                      [%saw, %k_u64_store], [%saw, %k_f32_store], [%saw, %k_f64b]
  %inext = add i64 %i, 1
  %more = icmp slt i64 %inext, %nn
  br i1 %more, label %loop, label %after

; ---- stream: None (PyTorch's current stream if a tensor was passed, else 0) or an int ---
after:
  %saw_all = phi i64 [0, %loop_head], [%saw_next, %next]
  %s_none = icmp eq ptr %stream, inttoptr (i64 @None@ to ptr)
  br i1 %s_none, label %s_default, label %s_given

s_default:
  %saw_any = icmp ne i64 %saw_all, 0
  br i1 %saw_any, label %s_torch, label %config

s_torch:
  %sfn_p = getelementptr i64, ptr %d, i64 @H_STREAM_FN@
  %sfn = load ptr, ptr %sfn_p
  %sfn_null = icmp eq ptr %sfn, null
  br i1 %sfn_null, label %ni, label %s_torch2

s_torch2:
  %ordo_p = getelementptr i64, ptr %d, i64 @H_ORD_OBJ@
  %ordo = load ptr, ptr %ordo_p
  store ptr %ordo, ptr %vc
  %so = call ptr inttoptr (i64 @Vectorcall@ to ptr)(ptr %sfn, ptr %vc, i64 1, ptr null)
  %so_null = icmp eq ptr %so, null
  br i1 %so_null, label %ni, label %s_torch3

s_torch3:
  %sh_t = call i64 inttoptr (i64 @AsUnsignedLongLong@ to ptr)(ptr %so)
  call void inttoptr (i64 @DecRef@ to ptr)(ptr %so)
  %sh_t_bad = icmp eq i64 %sh_t, -1
  br i1 %sh_t_bad, label %ni, label %config

s_given:
  %st_ty_p = getelementptr i8, ptr %stream, i64 8
  %st_ty = load ptr, ptr %st_ty_p
  %st_int = icmp eq ptr %st_ty, inttoptr (i64 @LongType@ to ptr)
  br i1 %st_int, label %s_given2, label %ni

s_given2:
  %sh_g = call i64 inttoptr (i64 @AsUnsignedLongLong@ to ptr)(ptr %stream)
  %sh_g_bad = icmp eq i64 %sh_g, -1
  br i1 %sh_g_bad, label %ni, label %config

; ---- launch configuration: block and smem must be the ones last checked for this kernel --
config:
  %sh = phi i64 [0, %s_default], [%sh_t, %s_torch3], [%sh_g, %s_given2]
  %lb_p = getelementptr i64, ptr %d, i64 @H_LAST_BLOCK@
  %lb = load ptr, ptr %lb_p
  %same_block = icmp eq ptr %block, %lb
  %sm_ty_p = getelementptr i8, ptr %smem, i64 8
  %sm_ty = load ptr, ptr %sm_ty_p
  %sm_int = icmp eq ptr %sm_ty, inttoptr (i64 @LongType@ to ptr)
  %cfg_ok = and i1 %same_block, %sm_int
  br i1 %cfg_ok, label %config2, label %ni

config2:
  %sm = call i64 inttoptr (i64 @AsLongLong@ to ptr)(ptr %smem)
  %ls_p = getelementptr i64, ptr %d, i64 @H_LAST_SMEM@
  %ls = load i64, ptr %ls_p
  %same_smem = icmp eq i64 %sm, %ls
  %g_ty_p = getelementptr i8, ptr %grid, i64 8
  %g_ty = load ptr, ptr %g_ty_p
  %g_tuple = icmp eq ptr %g_ty, inttoptr (i64 @TupleType@ to ptr)
  %cfg2_ok = and i1 %same_smem, %g_tuple
  br i1 %cfg2_ok, label %grid_size, label %ni

grid_size:
  %gsize = call i64 inttoptr (i64 @TupleSize@ to ptr)(ptr %grid)
  %g3 = icmp eq i64 %gsize, 3
  br i1 %g3, label %grid_x, label %ni

grid_x:
  %gxo = call ptr inttoptr (i64 @TupleGetItem@ to ptr)(ptr %grid, i64 0)
  %gx = call i64 inttoptr (i64 @AsLongLong@ to ptr)(ptr %gxo)
  %gyo = call ptr inttoptr (i64 @TupleGetItem@ to ptr)(ptr %grid, i64 1)
  %gy = call i64 inttoptr (i64 @AsLongLong@ to ptr)(ptr %gyo)
  %gzo = call ptr inttoptr (i64 @TupleGetItem@ to ptr)(ptr %grid, i64 2)
  %gz = call i64 inttoptr (i64 @AsLongLong@ to ptr)(ptr %gzo)
  ; each in [1, 2^32 - 1] (a failed conversion gives -1: out of range too)
  %gx1 = add i64 %gx, -1
  %gy1 = add i64 %gy, -1
  %gz1 = add i64 %gz, -1
  %gx_ok = icmp ult i64 %gx1, 4294967295
  %gy_ok = icmp ult i64 %gy1, 4294967295
  %gz_ok = icmp ult i64 %gz1, 4294967295
  %gxy_ok = and i1 %gx_ok, %gy_ok
  %g_ok = and i1 %gxy_ok, %gz_ok
  br i1 %g_ok, label %launch, label %ni

launch:
  %fn_p = getelementptr i64, ptr %d, i64 @H_FN@
  %fn = load i64, ptr %fn_p
  %argv_p = getelementptr i64, ptr %d, i64 @H_ARGV@
  %argv = load i64, ptr %argv_p
  %bx_p = getelementptr i64, ptr %d, i64 @H_BX@
  %bx = load i64, ptr %bx_p
  %by_p = getelementptr i64, ptr %d, i64 @H_BY@
  %by = load i64, ptr %by_p
  %bz_p = getelementptr i64, ptr %d, i64 @H_BZ@
  %bz = load i64, ptr %bz_p
  %gx32 = trunc i64 %gx to i32
  %gy32 = trunc i64 %gy to i32
  %gz32 = trunc i64 %gz to i32
  %bx32 = trunc i64 %bx to i32
  %by32 = trunc i64 %by to i32
  %bz32 = trunc i64 %bz to i32
  %sm32 = trunc i64 %sm to i32
  %err = call i32 inttoptr (i64 @LaunchKernel@ to ptr)(i64 %fn, i32 %gx32, i32 %gy32, i32 %gz32, i32 %bx32, i32 %by32, i32 %bz32, i32 %sm32, i64 %sh, i64 %argv, i64 0)
  %launched = icmp eq i32 %err, 0
  br i1 %launched, label %ok, label %ni

ok:
  call void inttoptr (i64 @IncRef@ to ptr)(ptr inttoptr (i64 @None@ to ptr))
  ret ptr inttoptr (i64 @None@ to ptr)

ni:  ; nothing launched: the Python tier does it (and reports any error)
  call void inttoptr (i64 @ErrClear@ to ptr)()
  call void inttoptr (i64 @IncRef@ to ptr)(ptr inttoptr (i64 @NotImplemented@ to ptr))
  ret ptr inttoptr (i64 @NotImplemented@ to ptr)
}
