//! Text logs escape control characters in every field value (issue 14 item 16).
//!
//! Repository, project, user, lock key and waiter id come from webhooks: a repository named
//! `a\nINFO forged line` or one holding `ESC[2J` must not start a new log line or drive the
//! operator's terminal. One field formatter for the text layer does it for every call site: it
//! writes fields like `tracing_subscriber`'s default (`message`, then `name=value`) and escapes
//! newline, carriage return and tab as `\n`, `\r`, `\t`, and any other control or bidirectional
//! formatting character as `\u{..}`. JSON logs need none of this (JSON escapes them already).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// The text layer's field formatter.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut v = Visitor {
            out: Escaper(writer),
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

/// True for characters a log line must not carry raw.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

/// Writes through, escaping what [`needs_escape`].
struct Escaper<'w>(Writer<'w>);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = rest.find(needs_escape) {
            self.0.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or_default();
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", u32::from(c))?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

struct Visitor<'w> {
    out: Escaper<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    fn separate(&mut self) -> fmt::Result {
        if self.first {
            self.first = false;
            Ok(())
        } else {
            self.out.0.write_char(' ')
        }
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        self.result = self.separate().and_then(|()| {
            if name == "message" {
                write!(self.out, "{value:?}")
            } else {
                let name = name.strip_prefix("r#").unwrap_or(name);
                write!(self.out.0, "{name}=")?;
                write!(self.out, "{value:?}")
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(b);
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn request_fields_cannot_forge_lines_or_drive_the_terminal() {
        let buf = Buf::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .fmt_fields(EscapedFields)
            .with_writer(buf.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let repo = "acme/x\nERROR forged line\u{1b}[2J";
            let span = tracing::info_span!("req", user = %"bob\r\u{202e}");
            let _e = span.enter();
            tracing::info!(repo = %repo, key = repo, waiter = ?repo, "queued {}", "in\tmessage");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(!text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{202e}'));
        assert!(
            text.contains(r"repo=acme/x\nERROR forged line\u{1b}[2J"),
            "{text}"
        );
        assert!(text.contains(r"user=bob\r\u{202e}"), "{text}");
        assert!(text.contains(r"queued in\tmessage"), "{text}");
        // `key = repo` is a &str field: quoted like the default formatter does.
        assert!(text.contains(r#"key="acme/x\nERROR"#), "{text}");
    }
}
