//! Driving the `onstage` binary from tests: a process whose stdout is read as JSON lines,
//! optionally inside a network namespace of the lab, and one-shot admin commands.

#![allow(dead_code)] // each test binary uses its own part

pub mod netlab;

use std::collections::VecDeque;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub const WAIT: Duration = Duration::from_secs(15);
pub const BIN: &str = env!("CARGO_BIN_EXE_onstage");

/// A running `onstage` process whose stdout is read line by line as JSON.
pub struct Proc {
    pub name: String,
    pub child: Child,
    stdin: Option<ChildStdin>,
    out: Lines<BufReader<ChildStdout>>,
    seen: Vec<Value>,
    /// Lines read while waiting for something else, not yet matched by `expect`.
    pending: VecDeque<Value>,
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        Proc::spawn_in(None, name, args, env)
    }

    /// Like [`Proc::spawn`], inside network namespace `netns` when given.
    pub fn spawn_in(netns: Option<&str>, name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut command = command_in(netns);
        command
            .args(args)
            .env_remove("ONSTAGE_ADMIN_KEY")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("onstage starts");
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Proc {
            name: name.to_owned(),
            child,
            stdin,
            out,
            seen: Vec::new(),
            pending: VecDeque::new(),
        }
    }

    /// The next stdout line, which must be one JSON object.
    pub async fn next(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(WAIT, self.out.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: no output within {WAIT:?}; saw {:#?}",
                    self.name, self.seen
                )
            })
            .expect("read stdout")?;
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: stdout line is not JSON ({e}): {line}", self.name));
        assert!(value.is_object(), "{}: not an object: {line}", self.name);
        self.seen.push(value.clone());
        Some(value)
    }

    /// Takes the first line matching `pred` that no earlier `expect` took, whether it has
    /// already been read or is still to come: a reply and the events it caused may arrive
    /// in either order.
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(at) = self.pending.iter().position(&pred) {
            return self.pending.remove(at).expect("position is in range");
        }
        loop {
            match self.next().await {
                Some(v) if pred(&v) => return v,
                Some(v) => self.pending.push_back(v),
                None => panic!(
                    "{}: stdout closed before {what}; saw {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }

    pub async fn expect_event(&mut self, name: &str, fields: Value) -> Value {
        let what = format!("{name} {fields}");
        self.expect(&what, |v| v["event"] == name && includes(v, &fields))
            .await
    }

    /// Every line read so far, in order (whether or not an `expect` took it).
    pub fn seen(&self) -> &[Value] {
        &self.seen
    }

    pub async fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).await.expect("write");
        stdin.write_all(b"\n").await.expect("write");
        stdin.flush().await.expect("flush");
    }

    /// Sends a call and returns its reply line (events before it are kept in `seen`).
    pub async fn call(&mut self, call: Value) -> Value {
        let id = call["id"].clone();
        self.send(&call.to_string()).await;
        let what = format!("the reply to {call}");
        self.expect(&what, |v| v.get("event").is_none() && v["id"] == id)
            .await
    }

    pub async fn ok(&mut self, call: Value) -> Value {
        let reply = self.call(call.clone()).await;
        assert_eq!(reply["ok"], true, "{}: {call} -> {reply}", self.name);
        reply["result"].clone()
    }

    pub async fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    pub async fn exit_code(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{}: did not exit", self.name))
            .expect("wait");
        status.code()
    }
}

/// Does `value` hold every field of `fields` (recursively for objects)?
pub fn includes(value: &Value, fields: &Value) -> bool {
    match (value, fields) {
        (Value::Object(v), Value::Object(f)) => f
            .iter()
            .all(|(k, fv)| v.get(k).is_some_and(|vv| includes(vv, fv))),
        (v, f) => v == f,
    }
}

/// Runs a one-shot command; returns its single stdout line as JSON and the output.
pub async fn once(args: &[&str], key: &str) -> (Value, Output) {
    once_in(None, args, key).await
}

/// `onstage` itself, or `ip netns exec NETNS onstage` (which execs it: same process).
fn command_in(netns: Option<&str>) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, BIN]);
            c
        }
        None => Command::new(BIN),
    }
}

/// Like [`once`], inside network namespace `netns` when given.
pub async fn once_in(netns: Option<&str>, args: &[&str], key: &str) -> (Value, Output) {
    let output = tokio::time::timeout(
        WAIT,
        command_in(netns)
            .args(args)
            .env("ONSTAGE_ADMIN_KEY", key)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("command finishes")
    .expect("command runs");
    let text = String::from_utf8(output.stdout.clone()).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line from {args:?}: {text:?}");
    let value = serde_json::from_str(lines[0]).expect("JSON line");
    (value, output)
}

pub async fn once_ok(args: &[&str], key: &str) -> Value {
    once_ok_in(None, args, key).await
}

pub async fn once_ok_in(netns: Option<&str>, args: &[&str], key: &str) -> Value {
    let (value, output) = once_in(netns, args, key).await;
    assert!(output.status.success(), "{args:?}: {value}");
    value
}

/// `onstage serve` on `data` (a 2 s grace period, a random port on loopback): the
/// process, its URL and the admin key it generated.
pub async fn serve(data: &std::path::Path) -> (Proc, String, String) {
    let (server, url, key) = serve_with(data, "127.0.0.1:0", &["--grace-ms", "2000"]).await;
    assert!(!key.is_empty(), "a generated admin key is printed");
    (server, url, key)
}

/// `onstage serve` on `data`, listening on `listen`, with `extra` arguments.
pub async fn serve_with(
    data: &std::path::Path,
    listen: &str,
    extra: &[&str],
) -> (Proc, String, String) {
    let data = data.to_str().expect("utf-8 path");
    let mut args = vec!["serve", "--listen", listen, "--data", data];
    args.extend_from_slice(extra);
    let mut server = Proc::spawn("serve", &args, &[]);
    let ready = server.next().await.expect("serve prints its ready line");
    assert_eq!(ready["event"], "listening", "{ready}");
    let url = ready["http"].as_str().expect("http").to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    // The key is printed only when it was generated, on the first start of a data dir.
    let key = ready["admin_key"].as_str().unwrap_or_default().to_owned();
    (server, url, key)
}

/// `onstage participant add` with the name as the user id: (user id, token).
pub async fn add(
    url: &str,
    key: &str,
    meeting: &str,
    name: &str,
    preset: &str,
) -> (String, String) {
    let p = once_ok(
        &[
            "participant",
            "add",
            "--server",
            url,
            "--meeting",
            meeting,
            "--name",
            name,
            "--preset",
            preset,
            "--user-id",
            name,
        ],
        key,
    )
    .await;
    (
        p["user_id"].as_str().expect("user id").to_owned(),
        p["token"].as_str().expect("token").to_owned(),
    )
}

/// `onstage meeting create`: the new meeting's id.
pub async fn create_meeting(url: &str, key: &str, title: &str) -> String {
    once_ok(
        &["meeting", "create", "--server", url, "--title", title],
        key,
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Frames (video, audio) `viewer` has decoded from `user`, as its `media.stats` says.
pub async fn frames_from(viewer: &mut Proc, user: &str) -> (u64, u64) {
    let stats = viewer.ok(json!({"id": 900, "call": "media.stats"})).await;
    let r = &stats["received"][user];
    (
        r["video_frames"].as_u64().unwrap_or(0),
        r["audio_frames"].as_u64().unwrap_or(0),
    )
}

/// Waits, up to `within`, until `viewer` has decoded at least `more` video and audio
/// frames from each of `users` beyond what `since` says; returns the counts then.
pub async fn await_frames(
    viewer: &mut Proc,
    users: &[&str],
    since: &[(u64, u64)],
    more: u64,
    within: Duration,
) -> Vec<(u64, u64)> {
    assert_eq!(users.len(), since.len(), "a starting count for each user");
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut now = Vec::new();
        for user in users {
            now.push(frames_from(viewer, user).await);
        }
        let enough = now
            .iter()
            .zip(since)
            .all(|(n, s)| n.0 >= s.0 + more && n.1 >= s.1 + more);
        if enough {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} decoded {now:?} from {users:?} within {within:?}, before {since:?}",
            viewer.name
        );
        // Polled: `media.stats` is a call, with no event for a count reached.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
