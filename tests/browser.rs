//! The smoke run's report.html in a real browser (Debian's headless chromium) at 1280 px: fails
//! when an element sticks out of the viewport, a chart has no size, the findings box is missing,
//! or the page logs an error. A small script injected into a copy of the report measures the laid
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

#[test]
fn smoke_report_fits_1280_px_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var("RUNNER_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "RUNNER_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)"
        );
        println!("SKIPPED: no chromium on PATH (apt-get install chromium); the report was not checked in a browser");
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

    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    let probed = html
        .replacen("<head>", &format!("<head>\n{HEAD_PROBE}"), 1)
        .replacen("</body>", &format!("{BODY_PROBE}\n</body>"), 1);
    assert!(probed.contains("browser-check") && probed.contains("window.__errors"));
    let page = run.join("report-probed.html");
    std::fs::write(&page, probed).unwrap();

    let (dom, log) = dump_dom(&chromium, &page, &dir.path().join("profile"));
    let json = dom
        .split("BROWSER-CHECK ")
        .nth(1)
        .and_then(|rest| rest.split(" END-CHECK").next())
        .unwrap_or_else(|| panic!("the probe did not run; chromium said:\n{log}"));
    let check: serde_json::Value = serde_json::from_str(&json.replace("&quot;", "\""))
        .unwrap_or_else(|e| panic!("{e}: {json}"));
    println!("browser check: {check}");
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
    assert!(check["charts"].as_u64().unwrap() >= 2, "{check}");
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
}
