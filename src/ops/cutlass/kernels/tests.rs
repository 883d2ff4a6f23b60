//! The kernel table's invariants: one .cu per instance, one kernel per row count and GELU
//! setting, forcing, and what the record says.

use super::*;

fn kinds() -> Vec<Kind> {
    let mut v = Vec::new();
    for inputs in [Inputs::Int8, Inputs::E4m3, Inputs::Float] {
        for out in [
            DType::F16,
            DType::BF16,
            DType::F32,
            DType::U8,
            DType::F8E4M3,
        ] {
            for gelu in [false, true] {
                for fast in [false, true] {
                    v.push(kind(inputs, out, gelu, fast));
                }
            }
        }
    }
    v
}

#[test]
fn every_instance_has_a_file_and_only_those() {
    // One .cu per instance (build/cutlass.rs compiles what is there), each naming its entry.
    let mut files: Vec<String> = std::fs::read_dir("src/ops/kernels/cutlass")
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "cu").then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    files.sort();
    let mut names: Vec<String> = INSTANCES.iter().map(|i| i.name.to_string()).collect();
    names.sort();
    assert_eq!(names, files);
    for i in INSTANCES {
        let text =
            std::fs::read_to_string(format!("src/ops/kernels/cutlass/{}.cu", i.name)).unwrap();
        let codes = i.kind.writes_codes();
        let rows = matches!(
            i.config,
            Config::PingPong128Rows
                | Config::PingPong128RowsNoCluster
                | Config::PingPong128x64Rows
                | Config::PingPong64Rows
        );
        let e4m3 = i.kind.inputs == Inputs::E4m3;
        let entry = match (codes, i.erf) {
            _ if i.config.needs_workspace() => "RUNNER_CUTLASS_GEMM_STREAMK",
            (true, Erf::TanhFitHalf2) if rows && e4m3 => {
                "RUNNER_CUTLASS_GEMM_ROWS_CODES_E4M3_HALF2"
            }
            (true, Erf::TanhFitHalf2) if rows => "RUNNER_CUTLASS_GEMM_ROWS_CODES_HALF2",
            _ if rows && codes => "RUNNER_CUTLASS_GEMM_ROWS_CODES",
            _ if rows => "RUNNER_CUTLASS_GEMM_ROWS_F16",
            (true, Erf::Fast) => "RUNNER_CUTLASS_GEMM_CODES",
            (true, Erf::TanhFitRne) => "RUNNER_CUTLASS_GEMM_CODES_LEAN",
            (true, _) => "RUNNER_CUTLASS_GEMM_CODES_ACT",
            (false, _) => "RUNNER_CUTLASS_GEMM",
        };
        assert!(text.contains(&format!("{entry}({},", i.name)), "{}", i.name);
        // The .cu's configuration and erf are the ones the table says.
        let config = match i.config {
            Config::PingPong128 if i.kind.inputs == Inputs::Float => "Pp128F16)",
            Config::PingPong128 if i.kind.fast_accumulation => "Pp128Fast)",
            Config::PingPong128 => "Pp128)",
            Config::Cooperative128 if i.kind.inputs == Inputs::Float => "Co128F16)",
            Config::Cooperative128 if i.kind.fast_accumulation => "Co128Fast)",
            Config::Cooperative128 => "Co128)",
            Config::Cooperative128x256 => "Co256)",
            Config::PingPong64 => "Pp64Fast)",
            Config::PingPong128NoCluster => "Pp128C1)",
            Config::PingPong128x64 => "Pp128x64)",
            Config::PingPong128Rows if i.kind.fast_accumulation => "Pp128Fast)",
            Config::PingPong128Rows => "Pp128)",
            Config::PingPong128RowsNoCluster => "Pp128C1)",
            Config::PingPong128x64Rows => "Epi64x64, Pp128x64)",
            Config::PingPong64Rows => "Epi64x128, Pp64)",
            Config::Cooperative128StreamK => "Co128C1)",
            Config::PingPong128x96NoCluster => "Pp128x96C1)",
        };
        assert!(text.contains(config), "{}: {config}", i.name);
        // A tile defined in its .cu (as the 128x64 and 64x128 ones) is the one the table says:
        // E4M3 promoted along K fits these in a ping-pong warpgroup without spilling.
        let tile = match i.config {
            Config::PingPong128x64Rows => {
                Some("Shape<_128, _64, _128>, C2x1, k::KernelTmaWarpSpecializedPingpong,")
            }
            Config::PingPong64Rows => {
                Some("Shape<_64, _128, _128>, C1x2, k::KernelTmaWarpSpecializedPingpong,")
            }
            Config::PingPong128x96NoCluster => Some(
                "Shape<_128, _96, _128>, Shape<_1, _1, _1>, k::KernelTmaWarpSpecializedPingpong,",
            ),
            _ => None,
        };
        if let Some(tile) = tile {
            assert!(text.contains(tile), "{}: {tile}", i.name);
        }
        let act = match (i.kind.gelu, i.erf) {
            (_, Erf::TanhFitRne) => "ties to even",
            (_, Erf::TanhFitHalf2) => "f16 pairs",
            _ if rows => "the same bits",
            _ if codes && i.kind.inputs == Inputs::Int8 => "RoundI8",
            _ if codes => "ClampE4m3",
            (false, _) => "runner_cutlass::Identity",
            (true, Erf::Fast) => "runner_cutlass::GeluErf",
            (true, Erf::Lean) => "runner_cutlass::GeluLean",
            (true, Erf::TanhFit) => "runner_cutlass::GeluTanhFit",
            (true, Erf::Erff) => "cutlass::epilogue::thread::GELU",
        };
        assert!(text.contains(act), "{}: {act}", i.name);
        // A codes kernel names its GELU beside its rounding.
        match i.erf {
            Erf::Lean if codes => assert!(text.contains("GeluLean"), "{}", i.name),
            Erf::TanhFit => assert!(codes && text.contains("GeluTanhFit"), "{}", i.name),
            Erf::TanhFitRne | Erf::TanhFitHalf2 => {
                assert!(codes && text.contains("fitted tanh"), "{}", i.name)
            }
            _ => {}
        }
    }
}

#[test]
fn every_kind_with_kernels_has_exactly_one_for_every_row_count() {
    for k in kinds() {
        // A kind none of whose kernels has run on a GPU is refused (cutlass::unsupported).
        if !has_checked_kernel(k) {
            continue;
        }
        for rows in [1, 16, 128, 129, 512, 2048, 4095, 4096, 8192, 1 << 20] {
            for n in [8, 768, 2047, 2048, 2304, 3072, 8192] {
                let picks = |erf: &[Erf]| {
                    instances(k)
                        .filter(|i| i.rule.picks(rows, n) && erf.contains(&i.erf))
                        .count()
                };
                let at = format!("{k:?} at {rows} rows, {n} outputs");
                assert_eq!(picks(&[Erf::Fast, Erf::Erff]), 1, "{at}");
                assert!(picks(&[Erf::Lean]) <= 1, "{at}");
                assert!(picks(&[Erf::TanhFit]) <= 1, "{at}");
                assert!(picks(&[Erf::TanhFitRne]) <= 1, "{at}");
                assert!(picks(&[Erf::TanhFitHalf2]) <= 1, "{at}");
            }
        }
    }
    let int8 = kind(Inputs::Int8, DType::F16, false, false);
    assert_eq!(
        choose(int8, 2048, 2304).unwrap().config,
        Config::PingPong128
    );
    assert_eq!(
        choose(int8, 8192, 2304).unwrap().config,
        Config::PingPong128
    );
    assert_eq!(choose(int8, 8192, 768).unwrap().config, Config::PingPong128);
    let fast = kind(Inputs::E4m3, DType::F16, false, true);
    assert_eq!(choose(fast, 16, 768).unwrap().config, Config::PingPong64);
    assert_eq!(choose(fast, 2048, 768).unwrap().config, Config::PingPong128);
    // E4M3 promoted along K: never the 128x128 ping-pong tile, whose two accumulators spill.
    for i in INSTANCES {
        if i.kind.inputs == Inputs::E4m3 && !i.kind.fast_accumulation {
            assert_ne!(i.config, Config::PingPong128, "{}", i.name);
        }
    }
}

#[test]
fn forcing_a_kernel_holds_for_its_kind_only() {
    let gelu = kind(Inputs::Int8, DType::F16, true, false);
    let erff = instances(gelu).find(|i| i.erf == Erf::Erff).unwrap();
    assert_eq!(choose(gelu, 8192, 3072).unwrap().erf, Erf::Fast);
    force(Some(erff));
    assert_eq!(choose(gelu, 8192, 3072), Some(erff));
    let plain = kind(Inputs::Int8, DType::F16, false, false);
    assert_eq!(choose(plain, 8192, 2304).unwrap().name, "i8_f16_pp128");
    force(None);
    assert_eq!(choose(gelu, 8192, 3072).unwrap().erf, Erf::Fast);
}

#[test]
fn the_lean_gelu_is_picked_where_it_exists_and_only_when_asked() {
    use GeluEpilogue::{Lean, Standard};
    for (k, name) in [
        (
            kind(Inputs::Int8, DType::F16, true, false),
            "i8_f16_gelu_co128lean",
        ),
        (
            kind(Inputs::Int8, DType::U8, true, false),
            "i8_codes_gelu_pp128h2",
        ),
        (
            kind(Inputs::E4m3, DType::F8E4M3, true, false),
            "e4m3_codes_f16_gelu_pp128x64h2",
        ),
        (
            kind(Inputs::E4m3, DType::F8E4M3, true, true),
            "e4m3_codes_f16_gelu_pp128fasth2",
        ),
        (
            kind(Inputs::E4m3, DType::F16, true, false),
            "e4m3_f16_gelu_co128lean",
        ),
        (
            kind(Inputs::Float, DType::F16, true, false),
            "f16_gelu_pp128lean",
        ),
    ] {
        for rows in [16, 2048, 8192] {
            assert_eq!(choose_by_rule(k, rows, 3072, Lean).unwrap().name, name);
            assert_ne!(
                choose_by_rule(k, rows, 3072, Standard).unwrap().erf,
                Erf::Lean
            );
        }
    }
    // No lean kernel: the standard one, under either setting.
    let bf16 = kind(Inputs::Float, DType::BF16, true, false);
    assert_eq!(
        choose_by_rule(bf16, 8192, 3072, Lean).unwrap().name,
        "bf16_gelu_pp128"
    );
    let plain = kind(Inputs::Int8, DType::F16, false, false);
    assert_eq!(
        choose_by_rule(plain, 8192, 768, Lean).unwrap().name,
        "i8_f16_pp128"
    );
}

#[test]
fn the_record_names_the_configuration_by_rows() {
    let d = describe(kind(Inputs::Int8, DType::F16, false, false));
    assert!(d.contains("ping-pong") && !d.contains("128x256"), "{d}");
    let d = describe(kind(Inputs::E4m3, DType::F16, false, true));
    assert!(
        d.contains("up to 128 rows") && d.contains("above 128 rows"),
        "{d}"
    );
    let d = describe(kind(Inputs::E4m3, DType::BF16, true, false));
    assert!(d.contains("cooperative") && d.contains("7e-7"), "{d}");
    assert!(d.contains("e4m3_bf16_gelu_co128"), "{d}");
}

#[test]
fn unchecked_kernels_are_neither_picked_nor_timed_nor_counted() {
    use GeluEpilogue::{Lean, Standard};
    // A kernel written without a GPU (session 15's fast-accumulation codes kernels were, until
    // session 16's check): its rule picks no rows, and it does not make its kind runnable.
    let written = inst(
        "written_without_a_gpu",
        kind(Inputs::E4m3, DType::F8E4M3, true, true),
        Config::PingPong128Rows,
        Erf::TanhFitHalf2,
        Rule::Unchecked,
    );
    let checked = INSTANCES
        .iter()
        .find(|i| i.name == "e4m3_codes_f16_gelu_pp128fasth2")
        .unwrap();
    for rows in [1, 16, 128, 129, 2048, 8192] {
        assert!(!written.rule.picks(rows, 3072));
    }
    assert!(!written.rule.checked() && checked.rule.checked());
    assert!(!any_checked([&written]));
    assert!(any_checked([&written, checked]));
    // The table's own unchecked kernels, if any: never the rule's pick, never a candidate.
    for i in INSTANCES.iter().filter(|i| !i.rule.checked()) {
        for rows in [1, 16, 128, 129, 2048, 8192] {
            for gelu in [Lean, Standard] {
                assert_ne!(
                    choose_by_rule(i.kind, rows, 3072, gelu),
                    Some(i),
                    "{}",
                    i.name
                );
            }
            assert!(
                !crate::ops::cutlass::tactics::candidates(i.kind, rows, 3072).contains(&i),
                "{}",
                i.name
            );
        }
    }
}

#[test]
fn a_kind_is_refused_by_name_exactly_when_none_of_its_kernels_ran_on_a_gpu() {
    for k in kinds()
        .into_iter()
        .filter(|&k| instances(k).next().is_some())
    {
        let why = crate::ops::cutlass::unsupported(k, 3072, 768).unwrap_or_default();
        assert_eq!(
            why.contains("not yet passed their GPU check"),
            !has_checked_kernel(k),
            "{k:?}: {why}"
        );
    }
    // E4M3 codes with fast accumulation passed cutlass_check --half2 (session 16, H100).
    let fast_codes = kind(Inputs::E4m3, DType::F8E4M3, true, true);
    assert!(has_checked_kernel(fast_codes));
}

/// The `runner_cutlass_*` names listed in `macro!(...)` of the ffi module's source.
fn listed_entries(source: &str, macro_call: &str) -> Vec<String> {
    let start = source
        .find(macro_call)
        .unwrap_or_else(|| panic!("no {macro_call}"));
    let list = &source[start + macro_call.len()..];
    let list = &list[..list.find(");").unwrap()];
    // A stream-K entry is listed as `entry: entry_workspace`.
    let mut names: Vec<String> = list
        .split(',')
        .map(|n| {
            let (entry, size) = n.split_once(':').unwrap_or((n, ""));
            let entry = entry.trim().trim_start_matches("runner_cutlass_");
            if !size.is_empty() {
                assert_eq!(size.trim(), format!("runner_cutlass_{entry}_workspace"));
            }
            entry.to_string()
        })
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names
}

#[test]
fn every_instance_has_an_entry_point_of_its_signature() {
    // The ffi lists are written by hand beside the table: an instance missing there compiles
    // and only panics when a GPU launches it (session 16's first call), so the CPU build checks.
    let source = std::fs::read_to_string("src/ops/cutlass/mod.rs").unwrap();
    let by_signature = |codes: bool, workspace: bool| {
        let mut names: Vec<String> = INSTANCES
            .iter()
            .filter(|i| i.kind.writes_codes() == codes && i.config.needs_workspace() == workspace)
            .map(|i| i.name.to_string())
            .collect();
        names.sort();
        names
    };
    assert!(INSTANCES
        .iter()
        .all(|i| !(i.kind.writes_codes() && i.config.needs_workspace())));
    assert_eq!(
        listed_entries(&source, "gemm_codes!("),
        by_signature(true, false)
    );
    assert_eq!(
        listed_entries(&source, "gemms!("),
        by_signature(false, false)
    );
    assert_eq!(
        listed_entries(&source, "gemm_streamk!("),
        by_signature(false, true)
    );
    // The .cu's macro emits both functions the list names.
    let streamk = std::fs::read_to_string("src/ops/kernels/cutlass/gemm_streamk.cuh").unwrap();
    assert!(streamk.contains("runner_cutlass_##NAME##_workspace(int m, int n, int k, int splits)"));
}
