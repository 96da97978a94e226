//! Stdout: JSON objects, one a line. One-shot commands print with [`print_line`]; the
//! long-running ones (bot, serve) send whole lines to a single writer task, so lines from
//! different tasks never interleave.

use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use onstage_proto::ErrorBody;

/// The answer to one call or command: `{"id":..,"ok":true,"result":..}` or
/// `{"id":..,"ok":false,"error":{"code":..,"message":..}}`; `id` only when known.
#[derive(Debug, Serialize)]
pub struct Reply<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a Value>,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl<'a> Reply<'a> {
    pub fn ok(id: Option<&'a Value>, result: Value) -> Self {
        Self {
            id,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub fn error(id: Option<&'a Value>, error: ErrorBody) -> Self {
        Self {
            id,
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

/// One JSON line. Serializing our own types cannot fail; if it ever did, the line says so
/// rather than breaking the one-object-a-line rule.
pub fn to_line(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        format!(
            r#"{{"ok":false,"error":{{"code":"internal","message":{}}}}}"#,
            Value::String(format!("cannot serialize output: {e}"))
        )
    })
}

/// Prints one JSON line on stdout (for one-shot commands).
pub fn print_line(value: &impl Serialize) {
    println!("{}", to_line(value));
}

/// Prints `{"ok":false,"error":..}` on stdout.
pub fn print_error(id: Option<&Value>, error: &ErrorBody) {
    print_line(&Reply::error(id, error.clone()));
}

/// A handle to the single stdout writer task.
#[derive(Clone)]
pub struct Lines {
    tx: mpsc::UnboundedSender<String>,
}

impl Lines {
    /// Starts the writer task. Await the handle after dropping every [`Lines`] to be sure
    /// everything was written.
    pub fn start() -> (Lines, JoinHandle<()>) {
        Self::start_on(tokio::io::stdout())
    }

    /// Like [`Lines::start`], on any writer (tests).
    pub fn start_on<W>(mut out: W) -> (Lines, JoinHandle<()>)
    where
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        let task = tokio::spawn(async move {
            while let Some(mut line) = rx.recv().await {
                line.push('\n');
                if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
                    // Nobody reads stdout any more; nothing useful left to do with output.
                    tracing::debug!("stdout closed");
                    break;
                }
            }
        });
        (Lines { tx }, task)
    }

    /// Queues one value as a JSON line.
    pub fn send(&self, value: &impl Serialize) {
        self.send_line(to_line(value));
    }

    /// Queues one line that is already JSON (without the newline).
    pub fn send_line(&self, line: String) {
        let _ = self.tx.send(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reply_shapes() {
        let id = json!(3);
        assert_eq!(
            to_line(&Reply::ok(Some(&id), json!({"status":"ON_STAGE"}))),
            r#"{"id":3,"ok":true,"result":{"status":"ON_STAGE"}}"#
        );
        assert_eq!(
            to_line(&Reply::ok(Some(&id), Value::Null)),
            r#"{"id":3,"ok":true,"result":null}"#
        );
        assert_eq!(
            to_line(&Reply::error(
                None,
                ErrorBody::new(onstage_proto::ErrorCode::BadRequest, "no")
            )),
            r#"{"ok":false,"error":{"code":"bad_request","message":"no"}}"#
        );
    }

    #[tokio::test]
    async fn lines_are_whole_and_in_order() {
        let (reader, writer) = tokio::io::duplex(4096);
        let (lines, task) = Lines::start_on(writer);
        let other = lines.clone();
        lines.send(&json!({"a":1}));
        other.send(&json!({"b":"x".repeat(100)}));
        drop((lines, other));
        task.await.unwrap();
        let mut text = String::new();
        let mut reader = reader;
        tokio::io::AsyncReadExt::read_to_string(&mut reader, &mut text)
            .await
            .unwrap();
        let got: Vec<&str> = text.lines().collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], r#"{"a":1}"#);
        assert!(got[1].starts_with(r#"{"b":"xxx"#));
    }
}
