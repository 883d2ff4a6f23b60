//! Bad values of the device switches that pick kernels (quantization fusion, FP8 fast accumulation,
//! fused embeddings, the GELU epilogue, static FFN and attention scales, the attention's padding, the pair norms): each refused where it cannot run, with
//! the key named and exit code 2, before any model work; spelled right, the file plans. Split from
//! tests/config_errors.rs, whose helpers (`fails`, `valid_with`) both files share from tests/common.

mod common;
use common::*;

#[test]
fn the_quantization_fusion_switch_is_a_boolean_and_a_misspelling_gets_the_right_name() {
    let matrix = "[matrix]\nbatch_size = [1]\n";
    let msg = fails(
        &valid_with(&format!("[device]\nfuse_quantization = 1\n{matrix}")),
        &[],
        &[],
    );
    assert!(msg.contains("fuse_quantization"), "{msg}");
    assert!(msg.contains("exp.toml"), "{msg}");
    let msg = fails(
        &valid_with(matrix),
        &["--set", "device.fuse_quantisation=false"],
        &[],
    );
    assert!(msg.contains("fuse_quantisation"), "{msg}");
    assert!(msg.contains("fuse_quantization"), "the suggestion: {msg}");
    // Spelled right, it plans.
    let f = Fixture::new(&valid_with(matrix));
    let out = f
        .runner()
        .args([
            "plan",
            "exp.toml",
            "--set",
            "device.fuse_quantization=false",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
}

#[test]
fn the_fp8_fast_accumulation_switch_is_a_boolean_and_plans_when_spelled_right() {
    let matrix = "[matrix]\nbatch_size = [1]\n";
    let msg = fails(
        &valid_with(&format!(
            "[device]\nfp8_fast_accumulation = \"on\"\n{matrix}"
        )),
        &[],
        &[],
    );
    assert!(msg.contains("fp8_fast_accumulation"), "{msg}");
    assert!(msg.contains("exp.toml"), "{msg}");
    let msg = fails(
        &valid_with(matrix),
        &["--set", "device.fp8_fast_accumulate=true"],
        &[],
    );
    assert!(
        msg.contains("fp8_fast_accumulation"),
        "the suggestion: {msg}"
    );
    let f = Fixture::new(&valid_with(matrix));
    let out = f
        .runner()
        .args([
            "plan",
            "exp.toml",
            "--set",
            "device.fp8_fast_accumulation=true",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
}

/// `device.fused_embeddings` is a CUDA kernel of the encoders' only: the CPU (backend or build)
/// and a decoder are refused with the key named, never run the other way silently.
#[test]
fn fused_embeddings_is_refused_where_it_cannot_run_with_the_key_named() {
    let matrix = "[matrix]\nbatch_size = [1]\n";
    let msg = fails(
        &valid_with(&format!("[device]\nfused_embeddings = \"yes\"\n{matrix}")),
        &[],
        &[],
    );
    assert!(msg.contains("fused_embeddings"), "{msg}");
    let msg = fails(
        &valid_with(matrix),
        &[
            "--set",
            "device.backend=cpu",
            "--set",
            "device.fused_embeddings=true",
        ],
        &[],
    );
    assert!(msg.contains("device.fused_embeddings = true"), "{msg}");
    assert!(msg.contains("device.backend = \"cpu\""), "{msg}");
    assert!(msg.contains("set device.fused_embeddings = false"), "{msg}");
    // The test binary has no CUDA: with backend auto the build is what refuses it.
    if !cfg!(feature = "cuda") {
        let msg = fails(
            &valid_with(matrix),
            &["--set", "device.fused_embeddings=true"],
            &[],
        );
        assert!(msg.contains("device.fused_embeddings = true"), "{msg}");
        assert!(msg.contains("built without CUDA"), "{msg}");
    }
    // Spelled out as the default, it plans.
    let f = Fixture::new(&valid_with(matrix));
    let out = f
        .runner()
        .args(["plan", "exp.toml", "--set", "device.fused_embeddings=false"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
}

#[test]
fn fused_embeddings_with_a_decoder_names_the_model() {
    let f = decoder_experiment(
        "dec",
        "[models.dec]\narchitecture = \"qwen2\"\npreset = \"qwen2-tiny\"\n",
        "precision = [\"fp32\"]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let out = f
        .runner()
        .args([
            "plan",
            "exp.toml",
            "--set",
            "device.backend=auto",
            "--set",
            "device.fused_embeddings=true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let msg = stderr_of(&out);
    assert!(msg.contains("models.dec"), "{msg}");
    assert!(msg.contains("is a decoder"), "{msg}");
}

/// `device.gelu_epilogue = "lean"` picks the CUTLASS epilogues' GELU: with cuBLASLt's GEMMs (whose
/// GELU is a runner kernel) it is refused naming the key, and an unknown value names it too.
#[test]
fn a_lean_gelu_epilogue_without_cutlass_is_refused() {
    let matrix = "[matrix]\nprecision = [\"int8-fp16\"]\nbatch_size = [1]\n";
    let msg = fails(
        &valid_with(matrix),
        &["--set", "device.gelu_epilogue=lean"],
        &[],
    );
    assert!(msg.contains("device.gelu_epilogue"), "{msg}");
    assert!(
        msg.contains("set device.gemm_library = \"cutlass\""),
        "{msg}"
    );
    let msg = fails(
        &valid_with(matrix),
        &["--set", "device.gelu_epilogue=quick"],
        &[],
    );
    assert!(msg.contains("gelu_epilogue"), "{msg}");
}

/// `device.ffn_activation_scales = "static"` has FFN-in's CUTLASS epilogue write the codes: a
/// CUDA cell with cuBLASLt's GEMMs, and a decoder (no encoder FFN to calibrate), are refused with
/// the key named; on the CPU (the f32 reference) and with CUTLASS it plans.
#[test]
fn static_ffn_scales_are_refused_where_no_kernel_or_encoder_takes_them() {
    let matrix = "[matrix]\nprecision = [\"int8-fp16\"]\nbatch_size = [1]\n";
    let msg = fails(
        &valid_with(matrix),
        &[
            "--set",
            "device.backend=cuda",
            "--set",
            "device.ffn_activation_scales=static",
        ],
        &[],
    );
    assert!(msg.contains("device.ffn_activation_scales"), "{msg}");
    assert!(
        msg.contains("set device.gemm_library = \"cutlass\""),
        "{msg}"
    );
    let msg = fails(
        &valid_with(matrix),
        &["--set", "device.ffn_activation_scales=sometimes"],
        &[],
    );
    assert!(msg.contains("ffn_activation_scales"), "{msg}");
    let f = decoder_experiment(
        "dec",
        "[models.dec]\narchitecture = \"qwen2\"\npreset = \"qwen2-tiny\"\n",
        "precision = [\"fp32\"]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let out = f
        .runner()
        .args([
            "plan",
            "exp.toml",
            "--set",
            "device.ffn_activation_scales=static",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let msg = stderr_of(&out);
    assert!(
        msg.contains("models.dec") && msg.contains("is a decoder"),
        "{msg}"
    );
    for sets in [
        vec!["device.backend=cpu", "device.ffn_activation_scales=static"],
        vec![
            "device.gemm_library=cutlass",
            "device.ffn_activation_scales=static",
        ],
    ] {
        let f = Fixture::new(&valid_with(matrix));
        let mut cmd = f.runner();
        cmd.args(["plan", "exp.toml"]);
        for s in sets {
            cmd.args(["--set", s]);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
}

/// A device switch that picks a CUDA kernel: `on` (`device.KEY=VALUE`, with `with`'s settings it
/// also needs) refused with the key named on the CPU backend and, in a build without CUDA, as
/// built without CUDA; `bad` (an unknown value) names the key; `default` spelled out plans.
struct CudaOnlySwitch<'a> {
    matrix: &'a str,
    on: &'a str,
    with: &'a [&'a str],
    bad: &'a str,
    default: &'a str,
}

impl CudaOnlySwitch<'_> {
    fn key(&self) -> &str {
        self.on.split('=').next().unwrap()
    }

    fn args(&self, set: &[&'static str]) -> Vec<String> {
        let mut args = vec!["--set".to_string(), self.on.to_string()];
        for setting in self.with.iter().chain(set) {
            args.extend(["--set".to_string(), setting.to_string()]);
        }
        args
    }

    fn assert_refused_where_no_cuda_kernel_runs(&self) {
        let toml = valid_with(self.matrix);
        let key = self.key();
        let on_cpu = self.args(&["device.backend=cpu"]);
        let msg = fails(
            &toml,
            &on_cpu.iter().map(String::as_str).collect::<Vec<_>>(),
            &[],
        );
        assert!(msg.contains(key), "{msg}");
        assert!(msg.contains("device.backend = \"cpu\""), "{msg}");
        if !cfg!(feature = "cuda") {
            let plain = self.args(&[]);
            let msg = fails(
                &toml,
                &plain.iter().map(String::as_str).collect::<Vec<_>>(),
                &[],
            );
            assert!(msg.contains(key), "{msg}");
            assert!(msg.contains("built without CUDA"), "{msg}");
        }
        let msg = fails(&toml, &["--set", self.bad], &[]);
        assert!(msg.contains(key.trim_start_matches("device.")), "{msg}");
        let f = Fixture::new(&toml);
        let out = f
            .runner()
            .args(["plan", "exp.toml", "--set", self.default])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
}

/// `device.attention_padding = "skip"` is a mode of the CUDA attention kernel.
#[test]
fn skipping_the_attention_padding_is_refused_where_no_kernel_runs() {
    CudaOnlySwitch {
        matrix: "[matrix]\nprecision = [\"fp16\"]\nbatch_size = [1]\n",
        on: "device.attention_padding=skip",
        with: &[],
        bad: "device.attention_padding=trim",
        default: "device.attention_padding=compute",
    }
    .assert_refused_where_no_cuda_kernel_runs();
}

/// `device.attention_activation_scales = "static"` has the CUDA attention kernel write
/// attention-out's codes: refused where no CUDA kernel runs, and for a decoder.
#[test]
fn static_attention_scales_are_refused_where_no_kernel_or_encoder_takes_them() {
    let key = "device.attention_activation_scales=static";
    CudaOnlySwitch {
        matrix: "[matrix]\nprecision = [\"int8-fp16\"]\nbatch_size = [1]\n",
        on: key,
        with: &[],
        bad: "device.attention_activation_scales=sometimes",
        default: "device.attention_activation_scales=dynamic",
    }
    .assert_refused_where_no_cuda_kernel_runs();
    let f = decoder_experiment(
        "dec",
        "[models.dec]\narchitecture = \"qwen2\"\npreset = \"qwen2-tiny\"\n",
        "precision = [\"fp32\"]\nprompt_len = [8]\nnew_tokens = [2]",
    );
    let out = f
        .runner()
        .args(["plan", "exp.toml", "--set", key])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let msg = stderr_of(&out);
    assert!(
        msg.contains("attention_activation_scales") && msg.contains("is a decoder"),
        "{msg}"
    );
}

/// `device.gemm_tactics = "timed"` times the CUDA CUTLASS GEMMs' kernels: refused with cuBLASLt
/// GEMMs too; "rule" (the default) spelled out plans.
#[test]
fn timed_gemm_tactics_are_refused_where_no_cutlass_kernel_runs() {
    let matrix = "[matrix]\nprecision = [\"int8-fp16\"]\nbatch_size = [1]\n";
    let key = "device.gemm_tactics=timed";
    let msg = fails(&valid_with(matrix), &["--set", key], &[]);
    assert!(msg.contains("device.gemm_tactics"), "{msg}");
    assert!(msg.contains("device.gemm_library = \"cublaslt\""), "{msg}");
    CudaOnlySwitch {
        matrix,
        on: key,
        with: &["device.gemm_library=cutlass"],
        bad: "device.gemm_tactics=fastest",
        default: "device.gemm_tactics=rule",
    }
    .assert_refused_where_no_cuda_kernel_runs();
}

/// `device.pair_norms = true` picks CUDA layer norm kernels; a non-boolean names the key; false
/// spelled out plans.
#[test]
fn pair_norms_are_refused_where_no_cuda_kernel_runs() {
    CudaOnlySwitch {
        matrix: "[matrix]\nprecision = [\"fp16\"]\nbatch_size = [1]\n",
        on: "device.pair_norms=true",
        with: &[],
        bad: "device.pair_norms=pairs",
        default: "device.pair_norms=false",
    }
    .assert_refused_where_no_cuda_kernel_runs();
}
