"""Targets for ONNX Runtime's other execution providers.

They share the cpu target's session parameters; ``provider_options`` go to the provider (for
example ``{device_id: 0}`` for CUDA, ``{device_type: CPU}`` for OpenVINO). They work only with an
onnxruntime build that ships the provider; otherwise ``check_available`` names what is installed and
the package that ships it. Option names are checked where ONNX Runtime documents them
(onnxruntime.ai/docs/execution-providers/<provider>): an unknown one is an error, not ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import create_model

from pipeline.targets.base import SessionParams, Target

# target name -> ONNX Runtime execution provider
PROVIDERS: dict[str, str] = {
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "qnn": "QNNExecutionProvider",
}


# target name -> the PyPI package whose onnxruntime ships the provider
PACKAGES: dict[str, str] = {
    "cuda": "onnxruntime-gpu",
    "tensorrt": "onnxruntime-gpu (with TensorRT libraries)",
    "rocm": "onnxruntime-rocm",
    "openvino": "onnxruntime-openvino",
    "dnnl": "an onnxruntime built with --use_dnnl (no PyPI wheel)",
    "xnnpack": "an onnxruntime built with --use_xnnpack (no desktop PyPI wheel)",
    "coreml": "onnxruntime on macOS",
    "qnn": "onnxruntime-qnn",
}

_CUDA = (
    "device_id gpu_mem_limit arena_extend_strategy cudnn_conv_algo_search do_copy_in_default_stream "
    "cudnn_conv_use_max_workspace cudnn_conv1d_pad_to_nc1d enable_cuda_graph "
    "enable_skip_layer_norm_strict_mode use_tf32 prefer_nhwc use_ep_level_unified_stream "
    "tunable_op_enable tunable_op_tuning_enable tunable_op_max_tuning_duration_ms sdpa_kernel "
    "fuse_conv_bias has_user_compute_stream user_compute_stream gpu_external_alloc gpu_external_free "
    "gpu_external_empty_cache"
)
# target name -> documented provider option names (None: not documented, not checked)
OPTIONS: dict[str, frozenset[str] | None] = {
    "cuda": frozenset(_CUDA.split()),
    "rocm": frozenset(
        "device_id gpu_mem_limit arena_extend_strategy miopen_conv_exhaustive_search do_copy_in_default_stream "
        "tunable_op_enable tunable_op_tuning_enable tunable_op_max_tuning_duration_ms enable_hip_graph "
        "has_user_compute_stream user_compute_stream".split()
    ),
    "tensorrt": frozenset(
        "device_id has_user_compute_stream user_compute_stream trt_max_workspace_size trt_fp16_enable "
        "trt_bf16_enable trt_int8_enable trt_int8_calibration_table_name trt_int8_use_native_calibration_table "
        "trt_dla_enable trt_dla_core trt_engine_cache_enable trt_engine_cache_path trt_engine_cache_prefix "
        "trt_timing_cache_enable trt_timing_cache_path trt_force_timing_cache trt_max_partition_iterations "
        "trt_min_subgraph_size trt_dump_subgraphs trt_force_sequential_engine_build "
        "trt_context_memory_sharing_enable trt_layer_norm_fp32_fallback trt_builder_optimization_level "
        "trt_auxiliary_streams trt_tactic_sources trt_extra_plugin_lib_paths trt_detailed_build_log "
        "trt_build_heuristics_enable trt_sparsity_enable trt_cuda_graph_enable trt_profile_min_shapes "
        "trt_profile_max_shapes trt_profile_opt_shapes trt_engine_decryption_enable "
        "trt_engine_decryption_lib_path trt_ep_context_file_path trt_dump_ep_context_model "
        "trt_ep_context_embed_mode trt_engine_hw_compatible trt_onnx_model_folder_path "
        "trt_weight_stripped_engine_enable trt_op_types_to_exclude".split()
    ),
    "openvino": frozenset(
        "device_type precision num_of_threads num_streams cache_dir context enable_opencl_throttling "
        "enable_qdq_optimizer disable_dynamic_shapes model_priority load_config reshape_input layout".split()
    ),
    "dnnl": None,
    "xnnpack": frozenset({"intra_op_num_threads"}),
    "coreml": frozenset(
        "ModelFormat MLComputeUnits RequireStaticInputShapes EnableOnSubgraphs SpecializationStrategy "
        "ProfileComputePlan AllowLowPrecisionAccumulationOnGPU ModelCacheDirectory".split()
    ),
    "qnn": frozenset(
        "backend_type backend_path profiling_level profiling_file_path rpc_control_latency vtcm_mb "
        "htp_performance_mode qnn_saver_path qnn_context_priority htp_graph_finalization_optimization_mode "
        "soc_model htp_arch device_id enable_htp_fp16_precision offload_graph_io_quantization "
        "enable_htp_spill_fill_buffer enable_htp_shared_memory_allocator dump_json_qnn_graph "
        "json_qnn_graph_dir".split()
    ),
}


def accelerator_target(name: str, provider: str) -> type[Target]:
    """A Target class for ``provider`` whose Params are the shared session params with ``name: <name>``."""
    title = name.capitalize()
    params = create_model(f"{title}Params", __base__=SessionParams, name=(Literal[name], name))  # type: ignore[valid-type]
    attrs = {"name": name, "provider": provider, "Params": params, "option_names": OPTIONS[name], "package": PACKAGES[name]}
    return type(f"{title}Target", (Target,), attrs)


ACCELERATORS: dict[str, type[Target]] = {name: accelerator_target(name, ep) for name, ep in PROVIDERS.items()}
