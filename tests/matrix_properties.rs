//! Property tests of matrix expansion: the cell count is the product of the axes, `exclude` removes
//! exactly what it matches, an `include` that matches nothing adds exactly one cell, and a cell's id
//! depends on what it is, not on where the file lists it.

mod common;
use common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use proptest::prelude::*;
use runner::matrix::{self, Cell};

const PRECISIONS: [&str; 4] = ["fp32", "fp16", "bf16", "q8_0"];

/// The axes of a generated matrix, each with distinct values in the file's order.
#[derive(Debug, Clone)]
struct Axes {
    precision: Vec<&'static str>,
    batch_size: Vec<u32>,
    seq_len: Vec<u32>,
}

fn axes() -> impl Strategy<Value = Axes> {
    (
        prop::sample::subsequence(PRECISIONS.to_vec(), 1..=4).prop_shuffle(),
        prop::collection::btree_set(1u32..=64, 1..=5)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>())
            .prop_shuffle(),
        prop::collection::btree_set(2u32..=128, 1..=4)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>())
            .prop_shuffle(),
    )
        .prop_map(|(precision, batch_size, seq_len)| Axes {
            precision,
            batch_size,
            seq_len,
        })
}

fn list<T: std::fmt::Display>(values: &[T], quoted: bool) -> String {
    let items: Vec<String> = values
        .iter()
        .map(|v| {
            if quoted {
                format!("\"{v}\"")
            } else {
                v.to_string()
            }
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// An experiment file with the axes in the given key order, plus extra matrix lines.
fn experiment(axes: &Axes, key_order: &[usize], extra: &str) -> String {
    let lines = [
        format!("precision = {}", list(&axes.precision, true)),
        format!("batch_size = {}", list(&axes.batch_size, false)),
        format!("seq_len = {}", list(&axes.seq_len, false)),
    ];
    let mut matrix = String::from("[matrix]\n");
    for &i in key_order {
        matrix.push_str(&lines[i]);
        matrix.push('\n');
    }
    format!(
        "[experiment]\nname = \"props\"\n{}{matrix}{extra}",
        common_tables()
    )
}

fn plan(text: &str) -> Vec<Cell> {
    let file = Path::new("props.toml");
    let exp = runner::config::load_text(file, text, &[]).expect("a valid experiment");
    matrix::expand(&exp, matrix::Target::Cpu)
        .expect("a valid matrix")
        .cells
}

/// Each cell's id by what it is.
fn ids_by_settings(cells: &[Cell]) -> BTreeMap<(String, usize, usize), String> {
    cells
        .iter()
        .map(|c| {
            (
                (c.precision.name().to_string(), c.batch_size, c.seq_len),
                c.id.clone(),
            )
        })
        .collect()
}

proptest! {
    // No failure-persistence files: a failing case prints its minimal input instead.
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn cell_count_is_the_product_of_the_axes_and_ids_are_unique(a in axes()) {
        let cells = plan(&experiment(&a, &[0, 1, 2], ""));
        prop_assert_eq!(cells.len(), a.precision.len() * a.batch_size.len() * a.seq_len.len());
        let ids: BTreeSet<&str> = cells.iter().map(|c| c.id.as_str()).collect();
        prop_assert_eq!(ids.len(), cells.len());
        prop_assert!(cells.iter().all(|c| matrix::is_cell_id(&c.id)));
    }

    #[test]
    fn ids_do_not_depend_on_the_order_of_values_or_keys(
        a in axes(),
        order in Just(vec![0usize, 1, 2]).prop_shuffle(),
        seed in any::<u64>(),
    ) {
        let first = plan(&experiment(&a, &[0, 1, 2], ""));
        // The same values listed in another order, the axes in another key order.
        let mut b = a.clone();
        let rotate = |n: usize| (seed as usize) % n.max(1);
        let (np, ns) = (rotate(b.precision.len()), rotate(b.seq_len.len()));
        b.precision.rotate_left(np);
        b.batch_size.reverse();
        b.seq_len.rotate_right(ns);
        let second = plan(&experiment(&b, &order, ""));
        prop_assert_eq!(ids_by_settings(&first), ids_by_settings(&second));
    }

    #[test]
    fn exclude_removes_exactly_the_matching_cells(a in axes(), pick in any::<prop::sample::Index>()) {
        let excluded_batch = a.batch_size[pick.index(a.batch_size.len())];
        let all = plan(&experiment(&a, &[0, 1, 2], ""));
        let expected: Vec<&Cell> = all.iter().filter(|c| c.batch_size != excluded_batch as usize).collect();
        if expected.is_empty() {
            // Excluding every cell is refused (0 cells, tested elsewhere): nothing to compare.
            return Ok(());
        }
        let kept = plan(&experiment(
            &a,
            &[0, 1, 2],
            &format!("[[matrix.exclude]]\nbatch_size = {excluded_batch}\n"),
        ));
        prop_assert_eq!(kept.iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn an_include_that_matches_nothing_adds_exactly_one_cell(a in axes()) {
        // Batch 65 is outside every generated axis, so the entry matches no combination.
        let all = plan(&experiment(&a, &[0, 1, 2], ""));
        let more = plan(&experiment(
            &a,
            &[0, 1, 2],
            "[[matrix.include]]\nprecision = \"fp32\"\nbatch_size = 65\nseq_len = 32\n",
        ));
        prop_assert_eq!(more.len(), all.len() + 1);
        prop_assert_eq!(&more[..all.len()], &all[..]);
        let added = &more[all.len()];
        prop_assert_eq!((added.precision.name(), added.batch_size, added.seq_len), ("fp32", 65, 32));
    }
}
