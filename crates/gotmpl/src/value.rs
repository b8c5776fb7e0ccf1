//! Values while a template runs, and how Go's `fmt` prints them (`%v`): the JSON document
//! stands in for the Go value, so a JSON object prints as a Go map and `null` as a nil
//! interface.

use serde_json::{Number, Value};

/// A value during execution: a JSON value, or the "no value" of a missing map key (Go's
/// invalid `reflect.Value`, printed `<no value>`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Missing,
    J(Value),
}

impl Val {
    pub fn str(s: impl Into<String>) -> Val {
        Val::J(Value::String(s.into()))
    }

    pub fn json(&self) -> &Value {
        match self {
            Val::Missing => &Value::Null,
            Val::J(v) => v,
        }
    }

    /// Go's truth: false, 0, nil, and empty strings, lists and maps are false.
    pub fn truth(&self) -> bool {
        match self {
            Val::Missing | Val::J(Value::Null) => false,
            Val::J(Value::Bool(b)) => *b,
            Val::J(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
            Val::J(Value::String(s)) => !s.is_empty(),
            Val::J(Value::Array(a)) => !a.is_empty(),
            Val::J(Value::Object(o)) => !o.is_empty(),
        }
    }

    /// The Go type a JSON decoder would have made, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Missing => "<no value>",
            Val::J(Value::Null) => "<nil>",
            Val::J(Value::Bool(_)) => "bool",
            Val::J(Value::Number(n)) if n.is_f64() => "float64",
            Val::J(Value::Number(_)) => "int",
            Val::J(Value::String(_)) => "string",
            Val::J(Value::Array(_)) => "[]interface {}",
            Val::J(Value::Object(_)) => "map[string]interface {}",
        }
    }
}

/// `fmt.Sprint(v)`.
pub(crate) fn sprint(v: &Val) -> String {
    match v {
        Val::Missing => "<no value>".to_string(),
        Val::J(j) => {
            let mut out = String::new();
            write_value(j, &mut out);
            out
        }
    }
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n)),
        Value::String(s) => out.push_str(s),
        Value::Array(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_value(e, out);
            }
            out.push(']');
        }
        Value::Object(o) => {
            // Go prints map keys sorted.
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            out.push_str("map[");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                write_value(&o[k], out);
            }
            out.push(']');
        }
    }
}

/// A number as Go prints it: integers in full, floats as `%g` with the shortest precision.
pub(crate) fn number(n: &Number) -> String {
    if n.is_f64() {
        float_g(n.as_f64().unwrap_or_default())
    } else {
        n.to_string()
    }
}

/// `strconv.FormatFloat(f, 'g', -1, 64)`: plain digits unless the decimal exponent is below -4
/// or at least 6 (Go's cut-off for the shortest form), then `d.ddde±XX`.
pub(crate) fn float_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{f}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prints_like_go() {
        let v = Val::J(json!({"b": [1, "x", null, true], "a": {"k": 1.5}, "c": []}));
        assert_eq!(sprint(&v), "map[a:map[k:1.5] b:[1 x <nil> true] c:[]]");
        assert_eq!(sprint(&Val::Missing), "<no value>");
        assert_eq!(float_g(1500.0), "1500");
        assert_eq!(float_g(1e6), "1e+06");
        assert_eq!(float_g(123456789.0), "1.23456789e+08");
        assert_eq!(float_g(0.0001), "0.0001");
        assert_eq!(float_g(0.00001), "1e-05");
        assert!(!Val::J(json!(0)).truth() && Val::J(json!(0.5)).truth());
        assert!(!Val::J(json!({})).truth() && !Val::Missing.truth());
    }
}
