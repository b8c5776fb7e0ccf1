//! The functions a template can call: Go's text/template built-ins and the ones docker adds for
//! `--format` (`json`, `join`, `split`, `lower`, `upper`, `title`, `pad`, `truncate`).
//! `and` and `or` are evaluated lazily by the executor.

use std::cmp::Ordering;

use serde_json::{Number, Value};

use crate::value::{number, sprint, Val};

/// Every name a template may call; anything else is refused when it is parsed.
const NAMES: &[&str] = &[
    // Go's built-ins.
    "and", "or", "not", "len", "index", "slice", "eq", "ne", "lt", "le", "gt", "ge", "print",
    "printf", "println", "html", "js", "urlquery", "call", // docker's.
    "json", "join", "split", "lower", "upper", "title", "pad", "truncate",
];

pub(crate) fn exists(name: &str) -> bool {
    NAMES.contains(&name)
}

/// Calls `name` (not `and`/`or`) with `args`; the error is the whole message after
/// `executing … at <…>: `.
pub(crate) fn call(name: &str, args: &[Val]) -> Result<Val, String> {
    let want = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            ))
        }
    };
    let calling = |e: String| format!("error calling {name}: {e}");
    match name {
        "not" => {
            want(1)?;
            Ok(Val::J(Value::Bool(!args[0].truth())))
        }
        "len" => {
            want(1)?;
            len(&args[0]).map_err(calling)
        }
        "index" => {
            if args.is_empty() {
                return Err(format!(
                    "wrong number of args for {name}: want at least 1 got 0"
                ));
            }
            index(&args[0], &args[1..]).map_err(calling)
        }
        "slice" => {
            if args.is_empty() || args.len() > 3 {
                return Err(format!(
                    "wrong number of args for {name}: want 1 to 3 got {}",
                    args.len()
                ));
            }
            slice(&args[0], &args[1..]).map_err(calling)
        }
        "eq" => {
            if args.len() < 2 {
                return Err(calling("missing argument for comparison".into()));
            }
            let mut truth = false;
            for b in &args[1..] {
                truth |= compare(&args[0], b, true).map_err(calling)? == Some(Ordering::Equal);
            }
            Ok(Val::J(Value::Bool(truth)))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let ord = compare(&args[0], &args[1], name == "ne").map_err(calling)?;
            let truth = match name {
                "ne" => ord != Some(Ordering::Equal),
                "lt" => ord == Some(Ordering::Less),
                "le" => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                "gt" => ord == Some(Ordering::Greater),
                _ => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
            };
            Ok(Val::J(Value::Bool(truth)))
        }
        "print" => Ok(Val::str(print(args))),
        "println" => {
            let parts: Vec<String> = args.iter().map(sprint).collect();
            Ok(Val::str(format!("{}\n", parts.join(" "))))
        }
        "printf" => {
            let Some((f, rest)) = args.split_first() else {
                return Err(format!(
                    "wrong number of args for {name}: want at least 1 got 0"
                ));
            };
            Ok(Val::str(sprintf(string(f).map_err(calling)?, rest)))
        }
        "html" => Ok(Val::str(html(&print(args)))),
        "js" => Ok(Val::str(js(&print(args)))),
        "urlquery" => Ok(Val::str(urlquery(&print(args)))),
        "call" => Err(calling("the data holds no functions to call".into())),
        "json" => {
            want(1)?;
            serde_json::to_string(args[0].json())
                .map(Val::str)
                .map_err(|e| calling(e.to_string()))
        }
        "join" => {
            want(2)?;
            let sep = string(&args[1]).map_err(calling)?;
            let parts: Vec<String> = match args[0].json() {
                Value::Null => Vec::new(),
                Value::Array(a) => a.iter().map(|e| sprint(&Val::J(e.clone()))).collect(),
                _ => return Err(calling(wrong_type("[]string", &args[0]))),
            };
            Ok(Val::str(parts.join(sep)))
        }
        "split" => {
            want(2)?;
            let s = string(&args[0]).map_err(calling)?;
            let sep = string(&args[1]).map_err(calling)?;
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::String(c.to_string())).collect()
            } else {
                s.split(sep).map(|p| Value::String(p.into())).collect()
            };
            Ok(Val::J(Value::Array(parts)))
        }
        "lower" | "upper" | "title" => {
            want(1)?;
            let s = string(&args[0]).map_err(calling)?;
            Ok(Val::str(match name {
                "lower" => s.to_lowercase(),
                "upper" => s.to_uppercase(),
                _ => title(s),
            }))
        }
        "pad" => {
            want(3)?;
            let s = string(&args[0]).map_err(calling)?;
            let before = int(&args[1]).map_err(calling)?;
            let after = int(&args[2]).map_err(calling)?;
            if s.is_empty() {
                return Ok(Val::str(""));
            }
            let spaces = |n: i64| " ".repeat(usize::try_from(n).unwrap_or(0));
            Ok(Val::str(format!("{}{s}{}", spaces(before), spaces(after))))
        }
        "truncate" => {
            want(2)?;
            let s = string(&args[0]).map_err(calling)?;
            let n = usize::try_from(int(&args[1]).map_err(calling)?).unwrap_or(0);
            if s.len() < n {
                return Ok(Val::str(s));
            }
            // docker cuts bytes; a cut inside a character moves back to its start.
            let mut end = n;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Ok(Val::str(&s[..end]))
        }
        _ => Err(format!("function {name:?} not defined")),
    }
}

fn wrong_type(want: &str, got: &Val) -> String {
    format!(
        "wrong type for value; expected {want}; got {}",
        got.type_name()
    )
}

fn string(v: &Val) -> Result<&str, String> {
    match v.json() {
        Value::String(s) => Ok(s),
        _ => Err(wrong_type("string", v)),
    }
}

fn int(v: &Val) -> Result<i64, String> {
    match v.json() {
        Value::Number(n) => n.as_i64().ok_or_else(|| wrong_type("int", v)),
        _ => Err(wrong_type("int", v)),
    }
}

fn len(v: &Val) -> Result<Val, String> {
    let n = match v.json() {
        Value::String(s) => s.len(),
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        Value::Null => return Err("len of nil pointer".into()),
        _ => return Err(format!("len of type {}", v.type_name())),
    };
    Ok(Val::J(n.into()))
}

fn index(item: &Val, keys: &[Val]) -> Result<Val, String> {
    let mut cur = item.clone();
    for key in keys {
        cur = match (cur.json(), key.json()) {
            (Value::Array(a), Value::Number(n)) => {
                let i = position(n, a.len())?;
                Val::J(a[i].clone())
            }
            (Value::String(s), Value::Number(n)) => {
                let i = position(n, s.len())?;
                Val::J(s.as_bytes()[i].into())
            }
            (Value::Object(o), Value::String(k)) => match o.get(k) {
                Some(v) => Val::J(v.clone()),
                // A missing key gives the map's zero value: "" for a map of strings (labels,
                // as docker's typed map[string]string gives), nil otherwise.
                None if o.values().all(Value::is_string) => Val::str(""),
                None => Val::J(Value::Null),
            },
            (Value::Array(_) | Value::String(_), _) => {
                return Err(format!(
                    "cannot index slice/array with type {}",
                    key.type_name()
                ))
            }
            (Value::Object(_), _) => {
                return Err(format!(
                    "value has type {}; should be string",
                    key.type_name()
                ))
            }
            (Value::Null, _) => return Err("index of untyped nil".into()),
            _ => return Err(format!("can't index item of type {}", cur.type_name())),
        };
    }
    Ok(cur)
}

/// An index into something of length `len`.
fn position(n: &Number, len: usize) -> Result<usize, String> {
    match n.as_i64().map(usize::try_from) {
        Some(Ok(i)) if i < len => Ok(i),
        Some(_) => Err(format!("index out of range: {n}")),
        None => Err(format!("cannot index slice/array with type {}", "float64")),
    }
}

fn slice(item: &Val, idx: &[Val]) -> Result<Val, String> {
    let len = match item.json() {
        Value::String(s) => s.len(),
        Value::Array(a) => a.len(),
        _ => return Err(format!("can't slice item of type {}", item.type_name())),
    };
    let mut bounds = [0, len];
    for (i, v) in idx.iter().take(2).enumerate() {
        let n = int(v)?;
        bounds[i] = usize::try_from(n)
            .ok()
            .filter(|&n| n <= len)
            .ok_or_else(|| format!("index out of range: {n}"))?;
    }
    let [lo, hi] = bounds;
    if lo > hi {
        return Err(format!("invalid slice index: {lo} > {hi}"));
    }
    Ok(match item.json() {
        Value::String(s) => Val::str(s.get(lo..hi).ok_or("slice inside a character")?),
        Value::Array(a) => Val::J(Value::Array(a[lo..hi].to_vec())),
        _ => unreachable!("checked above"),
    })
}

/// Go's comparison of two basic values: `None` when unordered (`eq` on different kinds of
/// nil-ness). Lists and maps cannot be compared; mixed kinds are an error unless `equality`
/// and one side is nil.
fn compare(a: &Val, b: &Val, equality: bool) -> Result<Option<Ordering>, String> {
    let (a, b) = (a.json(), b.json());
    match (a, b) {
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => {
            Err("invalid type for comparison".into())
        }
        (Value::Null, Value::Null) if equality => Ok(Some(Ordering::Equal)),
        (Value::Null, _) | (_, Value::Null) if equality => Ok(None),
        (Value::Null, _) | (_, Value::Null) => Err("invalid type for comparison".into()),
        (Value::Number(x), Value::Number(y)) => Ok(num_cmp(x, y)),
        (Value::String(x), Value::String(y)) => Ok(Some(x.cmp(y))),
        (Value::Bool(x), Value::Bool(y)) if equality => Ok(Some(x.cmp(y))),
        (Value::Bool(_), Value::Bool(_)) => Err("invalid type for comparison".into()),
        _ => Err("incompatible types for comparison".into()),
    }
}

fn num_cmp(x: &Number, y: &Number) -> Option<Ordering> {
    let int = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(x), int(y)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
    }
}

/// `fmt.Sprint`: a space between two operands when neither is a string.
fn print(args: &[Val]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = |v: &Val| matches!(v.json(), Value::String(_));
        if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
            out.push(' ');
        }
        out.push_str(&sprint(a));
    }
    out
}

/// `fmt.Sprintf` for the verbs templates use: `%v %s %q %d %f %e %g %x %X %t %c %%`, with the
/// `-`, `+`, `0` flags, a width and a precision; Go's `%!verb(type=value)` for a mismatch.
fn sprintf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut next = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut minus, mut plus, mut zero) = (false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let digits = |chars: &mut std::iter::Peekable<std::str::Chars>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
            n
        };
        let width = digits(&mut chars);
        let precision = if chars.peek() == Some(&'.') {
            chars.next();
            Some(digits(&mut chars).unwrap_or(0))
        } else {
            None
        };
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = next.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let text = verb_text(verb, arg, precision, plus);
        let numeric = matches!(arg.json(), Value::Number(_));
        out.push_str(&pad_to(&text, width, minus, zero && numeric && !minus));
    }
    let extra: Vec<String> = next
        .map(|a| format!("{}={}", a.type_name(), sprint(a)))
        .collect();
    if !extra.is_empty() {
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

fn verb_text(verb: char, arg: &Val, precision: Option<usize>, plus: bool) -> String {
    let bad = || format!("%!{verb}({}={})", arg.type_name(), sprint(arg));
    let j = arg.json();
    let sign = |s: String, negative: bool| {
        if plus && !negative {
            format!("+{s}")
        } else {
            s
        }
    };
    match (verb, j) {
        ('v', _) => sprint(arg),
        ('s', Value::String(s)) => match precision {
            Some(p) => s.chars().take(p).collect(),
            None => s.clone(),
        },
        ('s', Value::Array(_) | Value::Object(_)) => sprint(arg),
        ('q', Value::String(s)) => quote(s),
        ('d', Value::Number(n)) if !n.is_f64() => {
            sign(n.to_string(), n.as_i64().is_some_and(|i| i < 0))
        }
        ('x' | 'X', Value::Number(n)) if !n.is_f64() => {
            let s = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) if i < 0 => format!("-{:x}", i.unsigned_abs()),
                (_, Some(u)) => format!("{u:x}"),
                _ => number(n),
            };
            if verb == 'X' {
                s.to_uppercase()
            } else {
                s
            }
        }
        ('x' | 'X', Value::String(s)) => {
            let hex: String = s.bytes().map(|b| format!("{b:02x}")).collect();
            if verb == 'X' {
                hex.to_uppercase()
            } else {
                hex
            }
        }
        ('c', Value::Number(n)) => n
            .as_u64()
            .and_then(|u| u32::try_from(u).ok())
            .and_then(char::from_u32)
            .map_or_else(bad, String::from),
        ('t', Value::Bool(b)) => b.to_string(),
        ('f' | 'F' | 'e' | 'g', Value::Number(n)) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            let s = match verb {
                'f' | 'F' => format!("{f:.*}", precision.unwrap_or(6)),
                'e' => go_exp(f, precision.unwrap_or(6)),
                _ => crate::value::float_g(f),
            };
            sign(s, f < 0.0)
        }
        _ => bad(),
    }
}

/// `%e`: `d.dddddde±XX`.
fn go_exp(f: f64, precision: usize) -> String {
    let s = format!("{f:.precision$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
}

fn pad_to(s: &str, width: Option<usize>, left: bool, zeros: bool) -> String {
    let n = s.chars().count();
    let Some(w) = width.filter(|&w| w > n) else {
        return s.to_string();
    };
    let fill = w - n;
    if left {
        format!("{s}{}", " ".repeat(fill))
    } else if zeros {
        let (sign, digits) = match s.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("", s),
        };
        format!("{sign}{}{digits}", "0".repeat(fill))
    } else {
        format!("{}{s}", " ".repeat(fill))
    }
}

/// `strconv.Quote`.
fn quote(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `strings.Title`: the first letter of every word upper-cased, a word starting after any
/// character that is not a letter, digit or `_`.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = !(c.is_alphanumeric() || c == '_');
    }
    out
}

/// `template.HTMLEscapeString`.
fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `template.JSEscapeString`.
fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' | '>' | '&' | '=' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `url.QueryEscape`.
fn urlquery(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
