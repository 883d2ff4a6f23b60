//! Reports in a real browser (Debian's headless chromium) at 1280 px: the smoke run's
//! report.html, the report of a run with several `quantize` selections of two quantized
//! precisions (wide labels, a quantize column, CPU W8A8 cells not ranked on speed), and the
//! compare.html of that run against a copy with one cell slower and one faster (improved and
//! regressed rows, both runs' medians). Fails when an element sticks out of the viewport, a
//! chart has no size, the findings box is missing, or the page logs an error. A small script injected into a copy of the report measures the laid
//! out page and writes its verdict into the DOM, which `--dump-dom` prints; no WebDriver, no
//! network. Without chromium the test prints SKIPPED, unless RUNNER_REQUIRE_CHROMIUM=1 (CI).

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Catches script errors, failed loads and console.error calls from the first line of the page.
const HEAD_PROBE: &str = r#"<script>window.__errors=[];
window.addEventListener('error',function(e){window.__errors.push('error: '+(e.message||(e.target&&(e.target.src||e.target.href))||'load failure'));},true);
(function(){var o=console.error;console.error=function(){window.__errors.push('console.error: '+Array.prototype.join.call(arguments,' '));return o.apply(console,arguments);};})();
</script>"#;

/// Runs after the page is laid out; writes `BROWSER-CHECK {json} END-CHECK` into a <pre> of its
/// own (the markers are split in the source, so only the verdict holds them whole).
const BODY_PROBE: &str = r#"<script>(function(){
var vw=document.documentElement.clientWidth, over=[], empty=[];
function scrolls(el){for(var p=el.parentElement;p;p=p.parentElement){var o=getComputedStyle(p).overflowX;if(o==='auto'||o==='scroll'||o==='hidden')return true;}return false;}
document.querySelectorAll('body *').forEach(function(el){
  if(el.closest('details:not([open])'))return;
  var r=el.getBoundingClientRect();
  if(r.width===0&&r.height===0)return;
  if(r.right>vw+1&&!scrolls(el)&&over.length<20)over.push(el.tagName.toLowerCase()+(el.id?'#'+el.id:'')+(el.className&&el.className.baseVal===undefined?'.'+el.className:'')+' right='+Math.round(r.right));
});
document.querySelectorAll('figure svg').forEach(function(s){var r=s.getBoundingClientRect();if(!(r.width>0&&r.height>0))empty.push((s.closest('figure').textContent||'').trim().slice(0,60));});
var res={viewport:vw,scroll_width:document.documentElement.scrollWidth,overflowing:over,empty_charts:empty,charts:document.querySelectorAll('figure svg').length,findings:!!document.getElementById('findings'),errors:window.__errors};
var pre=document.createElement('pre');pre.id='browser-check';pre.textContent='BROWSER-'+'CHECK '+JSON.stringify(res)+' END-'+'CHECK';document.body.appendChild(pre);
})();</script>"#;

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RUNNER_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

fn dump_dom(chromium: &Path, page: &Path, profile: &Path) -> (String, String) {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,2000",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("starting chromium");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The page at `html` laid out at 1280 px, with the probes injected into a copy: the probe's
/// verdict, after the checks every page must pass (no sideways scrolling, nothing sticking out,
/// no errors, the findings box there, at least `min_charts` charts, none of zero size).
fn check_page(chromium: &Path, html: &Path, min_charts: u64) -> serde_json::Value {
    let text = std::fs::read_to_string(html).unwrap();
    let probed = text
        .replacen("<head>", &format!("<head>\n{HEAD_PROBE}"), 1)
        .replacen("</body>", &format!("{BODY_PROBE}\n</body>"), 1);
    assert!(probed.contains("browser-check") && probed.contains("window.__errors"));
    let page = html.with_extension("probed.html");
    std::fs::write(&page, probed).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let (dom, log) = dump_dom(chromium, &page, profile.path());
    let json = dom
        .split("BROWSER-CHECK ")
        .nth(1)
        .and_then(|rest| rest.split(" END-CHECK").next())
        .unwrap_or_else(|| panic!("the probe did not run; chromium said:\n{log}"));
    let check: serde_json::Value = serde_json::from_str(&json.replace("&quot;", "\""))
        .unwrap_or_else(|e| panic!("{e}: {json}"));
    println!("browser check of {}: {check}", html.display());
    assert_eq!(check["viewport"], 1280, "{check}");
    assert_eq!(
        check["findings"], true,
        "the findings box is missing: {check}"
    );
    assert!(
        check["overflowing"].as_array().unwrap().is_empty(),
        "elements stick out of the 1280 px viewport: {check}"
    );
    assert!(
        check["scroll_width"].as_u64().unwrap() <= 1280,
        "the page scrolls sideways: {check}"
    );
    assert!(check["charts"].as_u64().unwrap() >= min_charts, "{check}");
    assert!(
        check["empty_charts"].as_array().unwrap().is_empty(),
        "charts with zero size: {check}"
    );
    assert!(
        check["errors"].as_array().unwrap().is_empty(),
        "the page logged errors: {check}"
    );
    // Console messages chromium itself logs (CSP, parse errors) reach its stderr.
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(":CONSOLE(") && !l.contains("BROWSER-CHECK"))
        .collect();
    assert!(console.is_empty(), "console output: {console:?}");
    check
}

/// chromium, or `None` after saying SKIPPED (a failure where CI requires it).
fn chromium_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var("RUNNER_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "RUNNER_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)"
        );
        println!("SKIPPED: no chromium on PATH (apt-get install chromium); the report was not checked in a browser");
    }
    found
}

#[test]
fn smoke_report_fits_1280_px_in_a_real_browser() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("smoke");
    let out = assert_cmd::Command::cargo_bin("runner")
        .unwrap()
        .current_dir(repo(""))
        .args(["experiments/smoke.toml", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    check_page(&chromium, &run.join("report.html"), 2);
}

/// Every record's windows in `run` pinned to `ms * (1 + k / 1000)` per loop (window k), times
/// `factor` for the cell `slow` and divided by it for `fast`: verdicts that do not depend on
/// the machine's load.
fn pin_windows(run: &Path, ms: f64, slow: &str, fast: &str, factor: f64) {
    for entry in std::fs::read_dir(run.join("cells")).unwrap() {
        let path = entry.unwrap().path();
        let mut r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let id = r["cell"]["id"].as_str().unwrap().to_string();
        let scale = if id == slow {
            factor
        } else if id == fast {
            1.0 / factor
        } else {
            1.0
        };
        if let Some(windows) = r["windows"].as_array_mut() {
            for (k, w) in windows.iter_mut().enumerate() {
                let loop_ms = ms * scale * (1.0 + k as f64 / 1000.0);
                w["loops"] = 20.into();
                w["loop_ms"] = vec![loop_ms; 20].into();
                w["duration_s"] = (loop_ms * 20.0 / 1e3).into();
                w.as_object_mut().unwrap().remove("loop_ms_stride");
            }
        }
        std::fs::write(&path, serde_json::to_string_pretty(&r).unwrap()).unwrap();
    }
}

#[test]
fn a_report_of_several_quantize_selections_and_its_compare_fit_1280_px() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let f = Fixture::new(&format!(
        "[experiment]\nname = \"selections\"\n{}{FAST_PROTOCOL}[matrix]\nprecision = [\"fp32\", \"q8_0\", \"int8-fp32\"]\nbatch_size = [2, 4]\nseq_len = [16]\nquantize = [\"all\", \"ffn\", \"blocks:0-0\"]\n",
        common_tables()
    ));
    let a = f.dir.path().join("a");
    let out = f
        .runner()
        .args(["exp.toml", "--out"])
        .arg(&a)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let check = check_page(&chromium, &a.join("report.html"), 1);
    assert!(check["charts"].as_u64().unwrap() >= 1, "{check}");
    let html = std::fs::read_to_string(a.join("report.html")).unwrap();
    for label in ["quantize=ffn", "quantize=blocks:0-0", "quantize=all"] {
        assert!(html.contains(label), "{label} is in no label");
    }

    // B: a copy with one quantized cell twice as slow and another twice as fast.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("manifest.json")).unwrap()).unwrap();
    let ids: Vec<String> = manifest["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    let b = f.dir.path().join("b");
    copy_tree(&a, &b);
    pin_windows(&a, 10.0, "", "", 1.0);
    pin_windows(&b, 10.0, &ids[2], &ids[3], 2.0);
    let out = f
        .runner()
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .args(["--out", "cmp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let page = f.dir.path().join("cmp/compare.html");
    check_page(&chromium, &page, 0);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<tr class=\"regressed\">"), "{html}");
    assert!(html.contains("<tr class=\"improved\">"), "{html}");
    assert!(html.contains("times faster"), "{html}");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else if !entry.file_name().to_string_lossy().ends_with(".lock") {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
