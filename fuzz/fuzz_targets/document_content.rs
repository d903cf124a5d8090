//! Document content, JSON and YAML (CreateDocument / UpdateDocument `Content`): the YAML pre-scan
//! and `document_content::parse`, then what SendCommand does with a parsed document — bind the
//! given parameters, substitute `{{ name }}`, build the plan, drop the steps a platform skips —
//! and GetDocument's format conversion, whose output must parse back to the same document.
//!
//! Input: `<JSON|YAML> [<Parameters JSON>]\n<content>`, e.g.
//! `YAML {"commands":["echo hi"]}\n---\nschemaVersion: "2.2"…`. Unparseable parameters are none.
#![no_main]

use std::collections::BTreeMap;

use fleetrun_core::document::{bind_parameters, plan, AWS_RUN_SHELL_SCRIPT_CONTENT};
use fleetrun_core::document_content::{convert, default_text, parse, platform_types};
use fleetrun_core::documents::DocumentFormat;
use fleetrun_core::step_skips;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, content) = fleetrun_fuzz::split_line(data);
    let Ok(content) = std::str::from_utf8(content) else {
        return;
    };
    let head = String::from_utf8_lossy(head);
    let (format, params) = head.split_once(' ').unwrap_or((&head, ""));
    let format = DocumentFormat::parse(format).unwrap_or(if format.eq_ignore_ascii_case("yaml") {
        DocumentFormat::Yaml
    } else {
        DocumentFormat::Json
    });
    let given: BTreeMap<String, Vec<String>> = serde_json::from_str(params).unwrap_or_default();

    let Ok(spec) = parse("Fuzz-Doc", "1", content, format) else {
        // Parameters against the built-in document still exercise binding and substitution.
        if let Ok(spec) = parse(
            "AWS-RunShellScript",
            "1",
            AWS_RUN_SHELL_SCRIPT_CONTENT,
            DocumentFormat::Json,
        ) {
            let _ = plan(&spec, &given);
        }
        return;
    };
    let _ = platform_types(&spec);
    for p in &spec.params {
        let _ = default_text(p);
    }
    let _ = bind_parameters(&spec, &given);
    if let Ok(plan) = plan(&spec, &given) {
        let _ = plan.execution_timeout_seconds();
        for platform in ["Linux", "MacOS", "Windows", ""] {
            let _ = step_skips::for_platform(&plan, platform);
            for step in &plan.steps {
                let _ = step_skips::skip_reason(step, platform);
            }
        }
    }
    let other = match format {
        DocumentFormat::Json => DocumentFormat::Yaml,
        DocumentFormat::Yaml => DocumentFormat::Json,
    };
    let converted = convert(content, format, other)
        .unwrap_or_else(|e| panic!("a parsed document does not convert to {other:?}: {e}"));
    let again = parse("Fuzz-Doc", "1", &converted, other)
        .unwrap_or_else(|e| panic!("the {other:?} rendering does not parse: {e}\n{converted}"));
    assert_eq!(
        again, spec,
        "the {other:?} rendering means another document:\n{converted}"
    );
});
