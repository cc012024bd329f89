# cython: language_level=3
# Cython declarations of fastconv's C ABI (fastconv/fastconv.h).
#
#     cimport fastconv.kernels as fk
#     cdef fk.fc_conv2d_desc d
#     ...
#     with nogil:
#         st = fk.fc_conv2d_forward(&d, fk.FC_F32, fk.FC_ALGO_AUTO, x, w, NULL, y)
#
# Build the extension with include_dirs=[fastconv.get_include()], libraries=["fastconv"],
# library_dirs=[fastconv.get_lib_dir()] and runtime_library_dirs=[fastconv.get_lib_dir()].
# Every function is declared nogil: the kernels never touch Python, and are safe to call from
# several threads at once. See fastconv.h for the meaning of every field and status.
from libc.stdint cimport int32_t, int64_t, uint8_t


cdef extern from "fastconv/fastconv.h" nogil:
    # From fastconv/version.h (included by fastconv.h), generated from the package's version.
    enum:
        FASTCONV_VERSION_MAJOR
        FASTCONV_VERSION_MINOR
        FASTCONV_VERSION_PATCH
    const char *FASTCONV_VERSION_STRING

    ctypedef enum fc_status:
        FC_OK
        FC_EINVAL
        FC_ENOMEM
        FC_EUNSUPPORTED
        FC_EOVERFLOW

    ctypedef enum fc_dtype:
        FC_F32
        FC_F64

    ctypedef enum fc_algo:
        FC_ALGO_AUTO
        FC_ALGO_IM2COL
        FC_ALGO_DIRECT
        FC_ALGO_GEMM1X1
        FC_ALGO_DEPTHWISE
        FC_ALGO_REFERENCE
        FC_ALGO_WINOGRAD
        FC_ALGO_FFT
        FC_ALGO_LINEAR
        FC_ALGO_COUNT_

    # ---- convolution ----
    ctypedef struct fc_conv2d_desc:
        int64_t n, c, h, w
        int64_t k, kh, kw
        int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups

    fc_status fc_conv2d_output_size(const fc_conv2d_desc *d, int64_t *ho, int64_t *wo)
    fc_status fc_conv2d_supports(const fc_conv2d_desc *d, fc_algo a)
    ctypedef enum fc_direction:
        FC_DIR_FORWARD
        FC_DIR_BACKWARD_DATA
        FC_DIR_BACKWARD_WEIGHT

    fc_status fc_conv2d_choose(const fc_conv2d_desc *d, fc_algo *a)
    fc_status fc_conv2d_choose_for(const fc_conv2d_desc *d, fc_direction dir, fc_algo *a)
    fc_status fc_conv2d_choose_prepared(const fc_conv2d_desc *d, fc_algo *a)
    fc_status fc_conv2d_forward(const fc_conv2d_desc *d, fc_dtype t, fc_algo a,
                                const void *x, const void *w, const void *bias_or_null, void *y)
    fc_status fc_conv2d_backward_data(const fc_conv2d_desc *d, fc_dtype t, fc_algo a,
                                      const void *dy, const void *w, void *dx)
    fc_status fc_conv2d_backward_data_into(const fc_conv2d_desc *d, fc_dtype t, fc_algo a,
                                           const void *dy, const void *w, void *dx)
    fc_status fc_conv2d_backward_weight(const fc_conv2d_desc *d, fc_dtype t, fc_algo a,
                                        const void *dy, const void *x, void *dw,
                                        void *dbias_or_null)

    # ---- status, threads, build facts ----
    const char *fc_status_string(fc_status s)
    const char *fc_last_error()
    void fc_set_num_threads(int n)
    int fc_set_local_num_threads(int n)
    int fc_get_num_threads()
    ctypedef struct fc_hw_info:
        const char *isa
        const char *best_isa
        int64_t l1d_bytes, l2_bytes, l3_bytes
        int32_t cores
        char model[64]
        char vendor[16]
        int32_t full_avx512
        double fma512_ratio
    fc_status fc_hardware(fc_hw_info *out)
    int32_t fc_work_items()
    fc_status fc_core_round_trip(int32_t cpu_a, int32_t cpu_b, double seconds, double *ns)
    const char *fc_isa()
    const char *fc_algo_name(fc_algo a)

    # ---- the algorithm registry ----
    enum:
        FC_ALGO_FLAG_FORWARD
        FC_ALGO_FLAG_BACKWARD_DATA
        FC_ALGO_FLAG_BACKWARD_WEIGHT
        FC_ALGO_FLAG_PHASE_PLANES
        FC_ALGO_FLAG_NONFINITE_FALLBACK

    int fc_algo_count()
    unsigned int fc_algo_flags(fc_algo a)
    const char *fc_algo_description(fc_algo a)
    fc_status fc_conv2d_cost(const fc_conv2d_desc *d, fc_algo a, fc_direction dir, double *cost)

    # ---- pooling ----
    ctypedef struct fc_pool2d_desc:
        int64_t n, c, h, w
        int64_t kh, kw
        int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w
        int64_t ceil_mode

    ctypedef struct fc_planes2d_desc:
        int64_t n, c, h, w
        int64_t ho, wo

    fc_status fc_pool2d_output_size(const fc_pool2d_desc *d, int64_t *ho, int64_t *wo)
    fc_status fc_max_pool2d_forward(const fc_pool2d_desc *d, fc_dtype t, const void *x, void *y,
                                    int64_t *switches_or_null)
    fc_status fc_max_pool2d_backward(const fc_planes2d_desc *d, fc_dtype t, const void *dy,
                                     const int64_t *switches, void *dx)
    fc_status fc_max_unpool2d_forward(const fc_planes2d_desc *d, fc_dtype t, const void *x,
                                      const int64_t *switches, void *y)
    fc_status fc_max_unpool2d_backward(const fc_planes2d_desc *d, fc_dtype t, const void *dy,
                                       const int64_t *switches, void *dx)
    fc_status fc_avg_pool2d_forward(const fc_pool2d_desc *d, fc_dtype t, int count_include_pad,
                                    int64_t divisor_override, const void *x, void *y)
    fc_status fc_avg_pool2d_backward(const fc_pool2d_desc *d, fc_dtype t, int count_include_pad,
                                     int64_t divisor_override, const void *dy, void *dx)
    fc_status fc_adaptive_avg_pool2d_forward(const fc_planes2d_desc *d, fc_dtype t,
                                             const void *x, void *y)
    fc_status fc_adaptive_avg_pool2d_backward(const fc_planes2d_desc *d, fc_dtype t,
                                              const void *dy, void *dx)

    # ---- element-wise ----
    fc_status fc_relu_forward(fc_dtype t, int64_t n, const void *x, void *y)
    fc_status fc_relu_backward(fc_dtype t, int64_t n, const void *dy, const void *y, void *dx)
    fc_status fc_add_inplace(fc_dtype t, int64_t n, void *acc, const void *x)
    fc_status fc_relu_backward_rows(fc_dtype t, int64_t rows, int64_t cols, const void *dy,
                                    int64_t dy_stride, const void *y, void *dx)
    fc_status fc_softmax_cross_entropy_forward(fc_dtype t, int64_t outer, int64_t c,
                                               int64_t inner, const void *x, const void *q,
                                               void *loss, void *lse)
    fc_status fc_softmax_cross_entropy_backward(fc_dtype t, int64_t outer, int64_t c,
                                                int64_t inner, const void *x, const void *q,
                                                const void *lse, const void *dloss, void *dx)
    ctypedef struct fc_optim_tensor:
        void *param
        const void *grad
        void *state[3]
        int64_t n
        double step_size
        double bias2_sqrt
        int init
    ctypedef struct fc_sgd_args:
        double lr, momentum, dampening, weight_decay
        int nesterov, maximize
    ctypedef struct fc_adam_args:
        double lr, beta1, beta2, eps, weight_decay
        int amsgrad, maximize, decoupled
    fc_status fc_sgd_step(fc_dtype t, int64_t count, const fc_optim_tensor *tensors,
                          const fc_sgd_args *args)
    fc_status fc_adam_step(fc_dtype t, int64_t count, const fc_optim_tensor *tensors,
                           const fc_adam_args *args)
    fc_status fc_batch_norm_forward(fc_dtype t, int64_t n, int64_t c, int64_t hw, const void *x,
                                    const void *weight_or_null, const void *bias_or_null,
                                    const void *residual_or_null, int act, int batch_stats,
                                    double eps, void *mean, void *var_or_null, void *invstd,
                                    void *y)
    fc_status fc_batch_norm_update_running(fc_dtype t, int64_t c, int64_t count,
                                           double momentum, const void *mean, const void *var,
                                           void *running_mean_or_null,
                                           void *running_var_or_null)
    fc_status fc_batch_norm_backward(fc_dtype t, int64_t n, int64_t c, int64_t hw,
                                     const void *dy, const void *x, const void *y_or_null,
                                     const void *mean, const void *invstd,
                                     const void *weight_or_null, int batch_stats,
                                     void *dx_or_null, void *dres_or_null,
                                     void *dweight_or_null, void *dbias_or_null)
    fc_status fc_batch_norm_forward_masked(fc_dtype t, int64_t n, int64_t c, int64_t hw,
                                           const void *x, const void *weight_or_null,
                                           const void *bias_or_null, const void *residual_or_null,
                                           int batch_stats, double eps, void *mean,
                                           void *var_or_null, void *invstd, void *y,
                                           uint8_t *mask)
    fc_status fc_batch_norm_backward_masked(fc_dtype t, int64_t n, int64_t c, int64_t hw,
                                            const void *dy, const void *x, const uint8_t *mask,
                                            const void *mean, const void *invstd,
                                            const void *weight_or_null, int batch_stats,
                                            void *dx_or_null, void *dres_or_null,
                                            void *dweight_or_null, void *dbias_or_null)

    # ---- prepared convolutions and inference plans ----
    ctypedef struct fc_conv2d_prepared:
        pass
    fc_status fc_conv2d_prepare(const fc_conv2d_desc *d, fc_dtype t, fc_algo a, const void *w,
                                int borrow, fc_conv2d_prepared **out)
    fc_status fc_conv2d_forward_prepared(const fc_conv2d_prepared *p, const void *x,
                                         const void *bias_or_null, const void *residual_or_null,
                                         int act, double alpha, void *y)
    fc_status fc_conv2d_backward_data_prepared(const fc_conv2d_prepared *p, const void *dy,
                                               int accumulate, void *dx)
    fc_status fc_conv2d_prepared_reuse(const fc_conv2d_desc *d, fc_dtype t, fc_algo a,
                                       int *reuses)
    void fc_conv2d_prepared_destroy(fc_conv2d_prepared *p)

    ctypedef struct fc_plan:
        pass
    ctypedef enum fc_value_kind:
        FC_VALUE_INPUT, FC_VALUE_OUTPUT, FC_VALUE_ARENA
    ctypedef enum fc_plan_op:
        FC_PLAN_CONV, FC_PLAN_MAX_POOL, FC_PLAN_AVG_POOL, FC_PLAN_ADAPTIVE_AVG, FC_PLAN_LINEAR,
        FC_PLAN_ELTWISE, FC_PLAN_CHANNEL_MUL, FC_PLAN_CHANNEL_AFFINE, FC_PLAN_LRN,
        FC_PLAN_COPY_CHANNELS, FC_PLAN_OP_COUNT_
    ctypedef enum fc_act:
        FC_ACT_NONE, FC_ACT_RELU, FC_ACT_SIGMOID, FC_ACT_TANH, FC_ACT_LEAKY_RELU, FC_ACT_ELU,
        FC_ACT_COUNT_
    ctypedef struct fc_plan_step:
        int32_t op
        int32_t act
        double alpha
        int64_t in0, in1, out
        int64_t weight, bias
        fc_conv2d_desc conv
        int32_t algo
        int32_t count_include_pad
        fc_pool2d_desc pool
        int64_t dims[4]
        int64_t extra[2]
        double lrn[3]
        int64_t in2
    fc_status fc_plan_create(fc_dtype t, int64_t in_elems, int64_t out_elems,
                             int64_t arena_elems, fc_plan **out)
    void fc_plan_destroy(fc_plan *p)
    fc_status fc_plan_add_constant(fc_plan *p, const void *data, int64_t elems, int64_t *id)
    fc_status fc_plan_add_constant_view(fc_plan *p, const void *data, int64_t elems, int64_t *id)
    fc_status fc_plan_add_value(fc_plan *p, int32_t kind, int64_t offset, int64_t elems,
                                int64_t *id)
    fc_status fc_plan_add_step(fc_plan *p, const fc_plan_step *s)
    fc_status fc_plan_run(fc_plan *p, const void *x, void *y, double *seconds_or_null)
    int64_t fc_plan_step_count(const fc_plan *p)
    fc_status fc_plan_workspace(const fc_plan *p, int64_t *scratch_bytes, int64_t *allocations)
