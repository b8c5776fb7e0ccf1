//! Go's `text/template` over a JSON document, with the functions docker adds: what `container
//! inspect -f` and `container list --format` render.
//!
//! ```
//! let t = gotmpl::Template::parse("{{.State.Status}} {{json .Config.Env}}").unwrap();
//! let doc = serde_json::json!({"State": {"Status": "running"}, "Config": {"Env": ["A=1"]}});
//! assert_eq!(t.render(&doc).unwrap(), r#"running ["A=1"]"#);
//! ```
//!
//! The document stands in for docker's Go structs: a JSON object is a map (`.Key` looks it up,
//! a missing key prints `<no value>`), `range` visits an object's keys in sorted order, and
//! values print as Go's `fmt` prints them (`[a b]`, `map[k:v]`, `<nil>` for `null`). What is
//! covered, and what is not (`define`/`template`/`block`, methods), is in the README.

#![warn(clippy::unwrap_used)]

mod exec;
mod funcs;
mod lex;
mod parse;
mod value;

use serde_json::Value;

/// A template that failed to parse or to run, in Go's words: `template: :LINE: MESSAGE` and
/// `template: :LINE:COL: executing "" at <COMMAND>: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template text is not a valid template.
    #[error("template: :{line}: {msg}")]
    Parse {
        /// 1-based line of the fault.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// Running it over the data failed (a field of a non-object, a function's error, …).
    #[error("template: :{line}:{col}: executing \"\" at <{at}>: {msg}")]
    Exec {
        /// 1-based line of the failing command.
        line: usize,
        /// Its byte offset within the line (Go counts from 0).
        col: usize,
        /// The command's text.
        at: String,
        /// What went wrong.
        msg: String,
    },
}

/// A parsed template, ready to render any number of documents.
#[derive(Debug, Clone)]
pub struct Template {
    src: String,
    nodes: Vec<parse::Node>,
}

impl Template {
    /// Parses `text`; unknown functions and undefined variables are refused here, as Go does.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let parse_err = |pos: usize, msg: String| TemplateError::Parse {
            line: line_col(text, pos).0,
            msg,
        };
        let items = lex::items(text).map_err(|e| parse_err(e.pos, e.msg))?;
        let nodes = parse::parse(text, items).map_err(|e| parse_err(e.pos, e.msg))?;
        Ok(Template {
            src: text.to_string(),
            nodes,
        })
    }

    /// Renders the template over `data`.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        exec::execute(&self.nodes, data).map_err(|e| {
            let (line, col) = line_col(&self.src, e.pos);
            TemplateError::Exec {
                line,
                col,
                at: e.at,
                msg: e.msg,
            }
        })
    }
}

/// Parses and renders in one step.
pub fn render(text: &str, data: &Value) -> Result<String, TemplateError> {
    Template::parse(text)?.render(data)
}

/// The 1-based line and 0-based column of byte `pos`, as Go's error messages count them.
fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = &src[..pos.min(src.len())];
    let line = 1 + before.matches('\n').count();
    let col = before.rfind('\n').map_or(pos, |nl| pos - nl - 1);
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "Name": "/web",
            "Id": "0123456789abcdef",
            "State": {"Status": "running", "Running": true, "ExitCode": 0, "Pid": 42},
            "Config": {
                "Env": ["PATH=/bin", "A=1"],
                "Cmd": ["sh", "-c", "echo hi"],
                "Entrypoint": null,
                "Labels": {"k": "v", "com.example.x": "y"},
            },
            "Mounts": [
                {"Type": "volume", "Destination": "/data", "RW": true},
                {"Type": "bind", "Destination": "/src", "RW": false},
            ],
            "NetworkSettings": {"Networks": {
                "web": {"IPAddress": "10.0.1.2"},
                "default": {"IPAddress": "192.168.64.2"},
            }},
            "HostConfig": {"Memory": 268435456, "NanoCpus": 1500000000, "CapAdd": null},
            "Ratio": 1.5,
        })
    }

    fn r(t: &str) -> String {
        render(t, &doc()).unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    fn fails(t: &str) -> String {
        render(t, &doc()).unwrap_err().to_string()
    }

    #[test]
    fn docker_examples() {
        assert_eq!(r("{{.State.Status}}"), "running");
        assert_eq!(r("{{.Name}}"), "/web");
        assert_eq!(r("{{json .Config.Cmd}}"), r#"["sh","-c","echo hi"]"#);
        assert_eq!(
            r("{{json .Config}}"),
            serde_json::to_string(&doc()["Config"]).unwrap()
        );
        assert_eq!(r("{{json .}}"), serde_json::to_string(&doc()).unwrap());
        assert_eq!(
            r("{{range .Mounts}}{{.Destination}} {{end}}"),
            "/data /src "
        );
        assert_eq!(r(r#"{{index .Config.Labels "k"}}"#), "v");
        assert_eq!(r(r#"{{index .Config.Labels "missing"}}"#), "");
        assert_eq!(
            r("{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}};{{end}}"),
            "default=192.168.64.2;web=10.0.1.2;"
        );
        assert_eq!(r("{{if .State.Running}}up{{else}}down{{end}}"), "up");
        assert_eq!(r("{{if not .State.Running}}up{{else}}down{{end}}"), "down");
        assert_eq!(r("{{.Config.Env}}"), "[PATH=/bin A=1]");
        assert_eq!(r("{{.Config.Labels}}"), "map[com.example.x:y k:v]");
        assert_eq!(r("{{.Config.Entrypoint}} {{.Nope}}"), "<nil> <no value>");
        assert_eq!(
            r("{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}"),
            "268435456 1500000000"
        );
        assert_eq!(r("{{.Ratio}}"), "1.5");
    }

    #[test]
    fn docker_functions() {
        assert_eq!(r(r#"{{join .Config.Cmd " "}}"#), "sh -c echo hi");
        assert_eq!(r(r#"{{join .HostConfig.CapAdd ","}}"#), "");
        assert_eq!(r(r#"{{split "a:b:c" ":"}}"#), "[a b c]");
        assert_eq!(r(r#"{{index (split "a=b" "=") 1}}"#), "b");
        assert_eq!(r("{{lower .State.Status | upper}}"), "RUNNING");
        assert_eq!(r(r#"{{title "hello wide-world_x"}}"#), "Hello Wide-World_x");
        assert_eq!(r(r#"[{{pad "x" 1 2}}][{{pad "" 1 2}}]"#), "[ x  ][]");
        assert_eq!(r(r#"{{truncate .Id 4}} {{truncate "ab" 5}}"#), "0123 ab");
        assert_eq!(r(r#"{{println "a" 1}}"#), "a 1\n");
        assert_eq!(r(r#"{{print "a" 1 2 "b"}}"#), "a1 2b");
        assert_eq!(
            r(
                r#"{{printf "%s=%d %5.2f|%-4s|%04d %q %v %t" "k" 7 .Ratio "ab" -12 "q\"" .Config.Env true}}"#
            ),
            r#"k=7  1.50|ab  |-012 "q\"" [PATH=/bin A=1] true"#
        );
        assert_eq!(r(r#"{{printf "%d %s" "x"}}"#), "%!d(string=x) %!s(MISSING)");
        assert_eq!(r("{{len .Config.Env}} {{len .Name}}"), "2 4");
        assert_eq!(
            r(r#"{{html "<a href='x'>"}} {{urlquery "a b&c"}}"#),
            "&lt;a href=&#39;x&#39;&gt; a+b%26c"
        );
        assert_eq!(
            r(r#"{{slice "abcdef" 1 3}} {{slice .Config.Env 1}}"#),
            "bc [A=1]"
        );
    }

    #[test]
    fn comparisons_and_logic() {
        assert_eq!(
            r(r#"{{if eq .State.Status "exited" "running"}}y{{end}}"#),
            "y"
        );
        assert_eq!(r(r#"{{if ne .State.ExitCode 0}}y{{else}}n{{end}}"#), "n");
        assert_eq!(
            r("{{if lt .State.Pid 100}}y{{end}}{{if ge 2.5 2}}z{{end}}"),
            "yz"
        );
        assert_eq!(
            r("{{if eq .Nope nil}}nil{{end}}{{if eq .Nope 1}}one{{end}}"),
            "nil"
        );
        assert_eq!(
            r(r#"{{and 1 0 "x"}} {{or 0 "" "y" "z"}} {{and 1 2}}"#),
            "0 y 2"
        );
        // `and` stops at its first false argument: the failing index is never evaluated.
        assert_eq!(r(r#"{{if and false (index .Config.Env 9)}}y{{end}}"#), "");
        assert!(fails(r#"{{if eq .Name 1}}{{end}}"#).contains("incompatible types for comparison"));
        assert!(fails(r#"{{if eq .Config.Env 1}}{{end}}"#).contains("invalid type for comparison"));
    }

    #[test]
    fn control_structures() {
        assert_eq!(
            r(r#"{{if eq .State.Status "exited"}}e{{else if .State.Running}}r{{else}}x{{end}}"#),
            "r"
        );
        assert_eq!(
            r("{{with .State}}{{.Status}}{{else}}none{{end}}"),
            "running"
        );
        assert_eq!(r("{{with .Nope}}{{.}}{{else}}none{{end}}"), "none");
        assert_eq!(r("{{with .Nope}}a{{else with .Name}}{{.}}{{end}}"), "/web");
        assert_eq!(
            r("{{range .Config.Entrypoint}}x{{else}}empty{{end}}"),
            "empty"
        );
        assert_eq!(
            r("{{range $i, $e := .Config.Cmd}}{{$i}}:{{$e}} {{end}}"),
            "0:sh 1:-c 2:echo hi "
        );
        assert_eq!(
            r(
                r#"{{range .Config.Cmd}}{{if eq . "-c"}}{{continue}}{{end}}{{if eq . "echo hi"}}{{break}}{{end}}{{.}}{{end}}"#
            ),
            "sh"
        );
        assert_eq!(
            r("{{$n := .Name}}{{range .Mounts}}{{$n}}{{.Type}} {{end}}"),
            "/webvolume /webbind "
        );
        assert_eq!(r("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}"), "2");
        assert_eq!(r("{{range .Mounts}}{{$.Name}}{{end}}"), "/web/web");
        assert_eq!(r("{{(index .Mounts 1).Type}}"), "bind");
        assert_eq!(r("a {{- /* note */ -}} b\n{{- .Name}}"), "ab/web");
        assert_eq!(r("{{`raw {{x}}`}}"), "raw {{x}}");
    }

    /// Arbitrary text made of template fragments: parsing and rendering never panic.
    #[test]
    fn any_text_is_an_answer_not_a_panic() {
        const PIECES: &[&str] = &[
            "{{",
            "}}",
            "{{-",
            " -}}",
            "-",
            " ",
            ".",
            ".Name",
            "$",
            "$x",
            ":=",
            "=",
            ",",
            "(",
            ")",
            "|",
            "\"",
            "`",
            "'",
            "if",
            "else",
            "end",
            "range",
            "with",
            "break",
            "index",
            "printf",
            "\"%5.2d\"",
            "0x",
            "1e",
            "+",
            "/*",
            "*/",
            "é",
            "\n",
            "nil",
            "json",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(PIECES[(seed % PIECES.len() as u64) as usize]);
            }
            if let Ok(t) = Template::parse(&text) {
                let _ = t.render(&doc());
            }
        }
        let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(render(&format!("{{{{{deep}}}}}"), &doc()).is_err());
    }

    #[test]
    fn errors_are_go_shaped() {
        assert_eq!(
            fails("{{nope .}}"),
            r#"template: :1: function "nope" not defined"#
        );
        assert_eq!(
            fails("x\n{{$y}}"),
            r#"template: :2: undefined variable "$y""#
        );
        assert_eq!(
            fails("{{if .A}}"),
            "template: :1: unexpected EOF: {{if}} without {{end}}"
        );
        assert_eq!(fails("{{end}}"), "template: :1: unexpected {{end}}");
        assert_eq!(fails("{{.A"), "template: :1: unclosed action");
        assert_eq!(
            fails("{{break}}"),
            "template: :1: {{break}} outside {{range}}"
        );
        assert!(fails(r#"{{template "x"}}"#).contains("not supported"));
        assert_eq!(
            fails("{{.Name.First}}"),
            r#"template: :1:2: executing "" at <.Name.First>: can't evaluate field First in type string"#
        );
        assert_eq!(
            fails("{{.Config.Entrypoint.X}}"),
            r#"template: :1:2: executing "" at <.Config.Entrypoint.X>: nil pointer evaluating interface {}.X"#
        );
        assert_eq!(
            fails("{{index .Config.Env 5}}"),
            r#"template: :1:2: executing "" at <index .Config.Env 5>: error calling index: index out of range: 5"#
        );
        assert!(fails("{{.Name 1}}").contains("can't give argument to non-function .Name"));
        assert!(fails("{{range .Name}}{{end}}").contains("range can't iterate over /web"));
        assert!(fails("{{upper 1}}").contains("expected string; got int"));
        assert!(fails("{{len}}").contains("wrong number of args for len: want 1 got 0"));
    }
}
