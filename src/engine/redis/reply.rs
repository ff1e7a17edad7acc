//! Decoding of script replies (`redis::Value`) into engine types.

use redis::Value;

use crate::engine::EngineError;

/// Shorthand for a malformed reply.
pub fn bad(what: &str) -> EngineError {
    EngineError::Protocol(what.to_owned())
}

/// The elements of an array reply.
pub fn array(v: &Value) -> Result<&[Value], EngineError> {
    match v {
        Value::Array(items) => Ok(items),
        Value::Nil => Ok(&[]),
        _ => Err(bad("expected an array")),
    }
}

/// A bulk string as bytes.
pub fn bytes(v: &Value) -> Result<Vec<u8>, EngineError> {
    match v {
        Value::BulkString(b) => Ok(b.clone()),
        Value::SimpleString(s) => Ok(s.clone().into_bytes()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        Value::Nil => Ok(Vec::new()),
        _ => Err(bad("expected a string")),
    }
}

/// A bulk string as UTF-8 text.
pub fn text(v: &Value) -> Result<String, EngineError> {
    String::from_utf8(bytes(v)?).map_err(|_| bad("expected UTF-8 text"))
}

/// An integer, given as an integer or as decimal text.
pub fn int(v: &Value) -> Result<i64, EngineError> {
    match v {
        Value::Int(i) => Ok(*i),
        _ => text(v)?
            .trim()
            .parse()
            .map_err(|_| bad("expected an integer")),
    }
}

/// An optional integer: empty text is `None`.
pub fn opt_int(v: &Value) -> Result<Option<i64>, EngineError> {
    match v {
        Value::Int(i) => Ok(Some(*i)),
        _ => {
            let t = text(v)?;
            if t.is_empty() {
                Ok(None)
            } else {
                t.parse().map(Some).map_err(|_| bad("expected an integer"))
            }
        }
    }
}

/// Element `i` of an array reply.
pub fn at(items: &[Value], i: usize) -> Result<&Value, EngineError> {
    items.get(i).ok_or_else(|| bad("short reply"))
}
