//! `Client::share` against a small in-test guest built from the server helpers: the pod
//! monitor's client and member clients over unix sockets run processes side by side, each
//! sees only its own output and replies, VM-wide calls of members never reach the guest, and a
//! member leaving (or falling behind) or the guest going away is handled.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::frame::{write_frame, Frame, FrameReader, Kind};
use agent::server::{handshake, write_loop, Incoming, Outbox};
use agent::*;
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);
/// A test that hangs fails instead.
const WHOLE: Duration = Duration::from_secs(60);

/// What the guest was asked, in order.
type Log = Arc<Mutex<Vec<String>>>;

#[derive(Default)]
struct Proc {
    started: bool,
    attached: bool,
    credit: usize,
    /// Output not sent yet.
    out: Vec<u8>,
    /// No more output will be produced.
    done: bool,
    eof_sent: bool,
    exit: Option<ExitStatus>,
    waiters: Vec<u32>,
}

/// A fake guest. Programs, by `args`: `["echo", text, n, code]` prints `text` `n` times and
/// exits with `code`; `["cat"]` copies stdin to stdout (its stdin credit is granted before the
/// `Created` reply, as vminitd does); `["sleep"]` runs until killed and then prints
/// `killed\n`. Handles start at 100. `Processes` requests are held until two are in flight
/// and then answered in reverse order, each with one process whose args are the container.
async fn fake_guest(io: DuplexStream, log: Log) {
    let (rd, wr) = tokio::io::split(io);
    let mut reader = FrameReader::new(rd);
    let (outbox, rx) = Outbox::new();
    tokio::spawn(write_loop(rx, wr));
    let ack = HelloAck {
        version: 0,
        nonce: 0,
        kernel: "pod-kernel".into(),
        processes: vec![7],
    };
    handshake(&mut reader, &outbox, ack).await.unwrap();
    let mut procs: HashMap<u32, Proc> = HashMap::new();
    let mut next = 100;
    let mut held_ps: Vec<(u32, String)> = Vec::new();
    let mut skipped = 0;
    while let Ok(Some(frame)) = reader.next(&mut skipped).await {
        let mut touched = None;
        match Incoming::from_frame(frame) {
            Incoming::Request { id, request } => {
                let request = request.unwrap();
                log.lock().unwrap().push(request.name().to_string());
                let reply = match request {
                    Request::Ping => Ok(Response::Ok),
                    Request::CreateProcess(cp) => {
                        let h = next;
                        next += 1;
                        let args = cp.process.args;
                        let mut p = Proc::default();
                        match args[0].as_str() {
                            "echo" => {
                                let n: usize = args[2].parse().unwrap();
                                p.out = args[1].repeat(n).into_bytes();
                                p.done = true;
                                p.exit = Some(ExitStatus {
                                    code: Some(args[3].parse().unwrap()),
                                    ..Default::default()
                                });
                            }
                            "cat" => {
                                outbox.window(stream_id(h, StdioStream::Stdin), 8);
                            }
                            _ => {}
                        }
                        procs.insert(h, p);
                        Ok(Response::Created(Created { handle: h }))
                    }
                    Request::Start(r) => {
                        procs.get_mut(&r.handle).unwrap().started = true;
                        touched = Some(r.handle);
                        Ok(Response::Started(Started {
                            pid: r.handle as i32,
                        }))
                    }
                    Request::Wait(r) => {
                        let p = procs.get_mut(&r.handle).unwrap();
                        match p.exit {
                            Some(s) => Ok(Response::Exited(s)),
                            None => {
                                p.waiters.push(id);
                                continue;
                            }
                        }
                    }
                    Request::Kill(k) => {
                        let p = procs.get_mut(&k.handle).unwrap();
                        p.out.extend_from_slice(b"killed\n");
                        p.done = true;
                        p.exit = Some(ExitStatus {
                            signal: Some(k.signal),
                            ..Default::default()
                        });
                        touched = Some(k.handle);
                        Ok(Response::Ok)
                    }
                    Request::Delete(r) => {
                        procs.remove(&r.handle);
                        Ok(Response::Ok)
                    }
                    Request::Processes(p) => {
                        held_ps.push((id, p.container));
                        if held_ps.len() == 2 {
                            while let Some((id, c)) = held_ps.pop() {
                                let info = ProcessInfo {
                                    args: vec![c],
                                    ..Default::default()
                                };
                                outbox.reply(
                                    id,
                                    Ok(Response::Processes(ProcessList {
                                        processes: vec![info],
                                        ..Default::default()
                                    })),
                                );
                            }
                        }
                        continue;
                    }
                    _ => Ok(Response::Ok),
                };
                outbox.reply(id, reply);
            }
            Incoming::Window { stream, credit } => {
                let (h, s) = split_stream_id(stream).unwrap();
                assert_eq!(
                    s,
                    StdioStream::Stdout,
                    "only stdout is attached in these tests"
                );
                log.lock().unwrap().push(format!("window {h}"));
                if let Some(p) = procs.get_mut(&h) {
                    p.attached = true;
                    p.credit += credit as usize;
                    touched = Some(h);
                }
            }
            Incoming::Data { stream, bytes, eof } => {
                let (h, s) = split_stream_id(stream).unwrap();
                assert_eq!(s, StdioStream::Stdin);
                if let Some(p) = procs.get_mut(&h) {
                    if !bytes.is_empty() {
                        outbox.window(stream, bytes.len() as u32);
                    }
                    p.out.extend_from_slice(&bytes);
                    if eof {
                        p.done = true;
                        p.exit = Some(ExitStatus {
                            code: Some(0),
                            ..Default::default()
                        });
                    }
                    touched = Some(h);
                }
            }
            _ => {}
        }
        // Let the process run: output against credit, then its end.
        let Some(h) = touched else { continue };
        let Some(p) = procs.get_mut(&h) else { continue };
        let out_id = stream_id(h, StdioStream::Stdout);
        while p.started && p.credit > 0 && !p.out.is_empty() {
            let n = p.credit.min(p.out.len()).min(frame::MAX_DATA_CHUNK);
            let chunk: Vec<u8> = p.out.drain(..n).collect();
            p.credit -= n;
            outbox.data(out_id, chunk, false);
        }
        if p.started && p.attached && p.done && p.out.is_empty() && !p.eof_sent {
            p.eof_sent = true;
            outbox.data(out_id, Vec::new(), true);
        }
        if let Some(s) = p.exit {
            for id in p.waiters.drain(..) {
                outbox.reply(id, Ok(Response::Exited(s)));
            }
        }
    }
}

struct Pod {
    owner: Client,
    share: JoinHandle<()>,
    guest: JoinHandle<()>,
    log: Log,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

async fn pod() -> Pod {
    let (host, guest_io) = tokio::io::duplex(1 << 16);
    let log = Log::default();
    let guest = tokio::spawn(fake_guest(guest_io, Arc::clone(&log)));
    let owner = Client::connect(host).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let share = owner.share(UnixListener::bind(&path).unwrap());
    Pod {
        owner,
        share,
        guest,
        log,
        path,
        _dir: dir,
    }
}

impl Pod {
    async fn member(&self) -> Client {
        let sock = UnixStream::connect(&self.path).await.unwrap();
        timeout(T, Client::connect(sock)).await.unwrap().unwrap()
    }

    fn guest_saw(&self, op: &str) -> bool {
        self.log.lock().unwrap().iter().any(|o| o == op)
    }
}

fn spec(args: &[&str]) -> CreateProcess {
    CreateProcess {
        container: "c".into(),
        process: ProcessSpec {
            args: args.iter().map(|a| a.to_string()).collect(),
            stdin: args[0] == "cat",
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Runs `echo text n code` and returns its output and status.
async fn echo(c: &Client, text: &str, n: usize, code: i32) -> (Vec<u8>, ExitStatus) {
    let h = c
        .create_process(spec(&["echo", text, &n.to_string(), &code.to_string()]))
        .await
        .unwrap();
    let mut out = c.stdout(h);
    c.start(h).await.unwrap();
    let bytes = out.read_to_end().await;
    let status = c.wait(h).await.unwrap();
    c.delete(h).await.unwrap();
    (bytes, status)
}

/// Runs `cat` with `input` on stdin (written in small pieces, against the guest's credit).
async fn cat(c: &Client, input: &[u8]) -> (Vec<u8>, ExitStatus) {
    let h = c.create_process(spec(&["cat"])).await.unwrap();
    let mut out = c.stdout(h);
    c.start(h).await.unwrap();
    let mut stdin = c.stdin(h);
    let input = input.to_vec();
    let writer = tokio::spawn(async move {
        for piece in input.chunks(1000) {
            stdin.write_all(piece).await.unwrap();
        }
        stdin.close().await.unwrap();
    });
    let bytes = out.read_to_end().await;
    writer.await.unwrap();
    (bytes, c.wait(h).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_and_members_each_get_their_own_output_and_status() {
    timeout(
        WHOLE,
        owner_and_members_each_get_their_own_output_and_status_body(),
    )
    .await
    .expect("the test timed out");
}

async fn owner_and_members_each_get_their_own_output_and_status_body() {
    let pod = pod().await;
    let m1 = pod.member().await;
    let m2 = pod.member().await;
    for m in [&m1, &m2] {
        assert_eq!(m.hello().kernel, "pod-kernel");
        assert_eq!(m.hello().version, PROTOCOL_VERSION);
        assert!(m.hello().processes.is_empty(), "a member owns nothing yet");
    }
    assert_eq!(pod.owner.hello().processes, vec![7]);

    // More output than one window each, all at once: credit flows per member.
    let n = 3 * client::OUTPUT_WINDOW as usize / 4 + 11;
    let (a, b, o) = tokio::join!(
        echo(&m1, "a1", n, 11),
        echo(&m2, "b2", n, 22),
        echo(&pod.owner, "o0", n, 33),
    );
    assert_eq!(a.0, "a1".repeat(n).into_bytes());
    assert_eq!(a.1.code, Some(11));
    assert_eq!(b.0, "b2".repeat(n).into_bytes());
    assert_eq!(b.1.code, Some(22));
    assert_eq!(o.0, "o0".repeat(n).into_bytes());
    assert_eq!(o.1.code, Some(33));

    // stdin through the share: the first credit comes before the handle is known.
    let input1: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let input2: Vec<u8> = (0..30_000u32).map(|i| (i % 13) as u8).collect();
    let (x, y, z) = tokio::join!(
        timeout(T, cat(&m1, &input1)),
        timeout(T, cat(&m2, &input2)),
        timeout(T, cat(&pod.owner, b"owner's own")),
    );
    assert_eq!(x.unwrap().0, input1);
    assert_eq!(y.unwrap().0, input2);
    assert_eq!(z.unwrap().0, b"owner's own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colliding_request_ids_route_to_their_member() {
    timeout(WHOLE, colliding_request_ids_route_to_their_member_body())
        .await
        .expect("the test timed out");
}

async fn colliding_request_ids_route_to_their_member_body() {
    let pod = pod().await;
    let m1 = pod.member().await;
    let m2 = pod.member().await;
    // Both first calls carry id 1; the guest answers the later one first.
    let (r1, r2) = tokio::join!(m1.processes("one".into()), m2.processes("two".into()));
    assert_eq!(r1.unwrap().processes[0].args, vec!["one"]);
    assert_eq!(r2.unwrap().processes[0].args, vec!["two"]);
    // And the owner's ids do not collide with the members' either.
    let (r0, r1) = tokio::join!(
        pod.owner.processes("owner".into()),
        m1.processes("one again".into())
    );
    assert_eq!(r0.unwrap().processes[0].args, vec!["owner"]);
    assert_eq!(r1.unwrap().processes[0].args, vec!["one again"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_wide_calls_of_members_are_refused_here() {
    timeout(WHOLE, vm_wide_calls_of_members_are_refused_here_body())
        .await
        .expect("the test timed out");
}

async fn vm_wide_calls_of_members_are_refused_here_body() {
    let pod = pod().await;
    let m = pod.member().await;
    let e = m.shutdown(false).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
    assert!(
        e.to_string()
            .contains("a pod member cannot shut the pod's VM down"),
        "{e}"
    );
    let e = m.configure(Configure::default()).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
    let e = m
        .setup_interface(Interface {
            name: "eth0".into(),
            addresses: vec![],
            gateway: None,
            gateway6: None,
            mtu: None,
            mac: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));
    let e = m
        .resume(Resume {
            entropy: vec![0; 32],
            time_unix_ns: 0,
            balloon: false,
            disks: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidArgument));

    // The member's session goes on; the guest answers in order, so after these round trips it
    // has seen everything that was forwarded.
    m.ping().await.unwrap();
    pod.owner.ping().await.unwrap();
    for op in ["shutdown", "configure", "setup_interface", "resume"] {
        assert!(!pod.guest_saw(op), "the guest saw a member's {op}");
    }
    assert!(pod.guest_saw("ping"));
    // The owner's own are not the share's business.
    pod.owner.configure(Configure::default()).await.unwrap();
    assert!(pod.guest_saw("configure"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_leaving_mid_process_leaves_the_others_alone() {
    timeout(
        WHOLE,
        a_member_leaving_mid_process_leaves_the_others_alone_body(),
    )
    .await
    .expect("the test timed out");
}

async fn a_member_leaving_mid_process_leaves_the_others_alone_body() {
    let pod = pod().await;
    let m1 = pod.member().await;
    let m2 = pod.member().await;

    // m2 is in the middle of a process when m1 goes.
    let h2 = m2.create_process(spec(&["cat"])).await.unwrap();
    let mut out2 = m2.stdout(h2);
    m2.start(h2).await.unwrap();
    let mut in2 = m2.stdin(h2);
    in2.write_all(b"before ").await.unwrap();

    let h1 = m1.create_process(spec(&["sleep"])).await.unwrap();
    let out1 = m1.stdout(h1);
    m1.start(h1).await.unwrap();
    // A call in flight when it goes.
    assert!(timeout(Duration::from_millis(200), m1.wait(h1))
        .await
        .is_err());
    drop(out1);
    drop(m1);
    // The process m1 left is killed and deleted for it (a monitor that dies takes its
    // container with it); its last output and its pending wait's answer are dropped, not
    // given to the owner.
    let deadline = std::time::Instant::now() + T;
    while !(pod.guest_saw("kill") && pod.guest_saw("delete")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the process of a member that left was not ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut stray = pod.owner.stdout(h1);
    assert!(
        timeout(Duration::from_millis(300), stray.recv())
            .await
            .is_err(),
        "the owner got output of a process of a member that left"
    );

    in2.write_all(b"after").await.unwrap();
    in2.close().await.unwrap();
    assert_eq!(
        timeout(T, out2.read_to_end()).await.unwrap(),
        b"before after"
    );
    assert_eq!(m2.wait(h2).await.unwrap().code, Some(0));
    let (o, s) = echo(&pod.owner, "o", 5, 3).await;
    assert_eq!((o, s.code), (b"ooooo".to_vec(), Some(3)));
    // And a newcomer is served.
    let m3 = pod.member().await;
    let (o, s) = echo(&m3, "m3", 2, 4).await;
    assert_eq!((o, s.code), (b"m3m3".to_vec(), Some(4)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_going_away_closes_every_member() {
    timeout(WHOLE, the_guest_going_away_closes_every_member_body())
        .await
        .expect("the test timed out");
}

async fn the_guest_going_away_closes_every_member_body() {
    let pod = pod().await;
    let m1 = pod.member().await;
    let m2 = pod.member().await;
    let h = m1.create_process(spec(&["sleep"])).await.unwrap();
    m1.start(h).await.unwrap();
    let waiting = tokio::spawn({
        let m1 = m1.clone();
        async move { m1.wait(h).await }
    });
    m2.ping().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    pod.guest.abort();
    timeout(T, pod.owner.closed()).await.unwrap();
    timeout(T, m1.closed()).await.unwrap();
    timeout(T, m2.closed()).await.unwrap();
    let r = timeout(T, waiting).await.unwrap().unwrap();
    assert!(matches!(r, Err(ClientError::Disconnected("wait"))), "{r:?}");
    timeout(T, pod.share).await.unwrap().unwrap();
    assert!(UnixStream::connect(&pod.path).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_does_not_read_is_cut_off() {
    timeout(WHOLE, a_member_that_does_not_read_is_cut_off_body())
        .await
        .expect("the test timed out");
}

async fn a_member_that_does_not_read_is_cut_off_body() {
    let pod = pod().await;
    // By hand, so it can grant credit and then stop reading.
    let mut sock = UnixStream::connect(&pod.path).await.unwrap();
    let hello = Hello {
        version: PROTOCOL_VERSION,
        nonce: 99,
    };
    write_frame(&mut sock, &Frame::json(Kind::Hello, 0, 0, &hello))
        .await
        .unwrap();
    let (rd, mut wr) = sock.into_split();
    let mut reader = FrameReader::new(rd);
    let mut skipped = 0;
    let ack = reader.next(&mut skipped).await.unwrap().unwrap();
    assert_eq!(ack.kind, Kind::HelloAck);
    assert_eq!(ack.parse::<HelloAck>().unwrap().nonce, 99);
    let total = agent::share::MEMBER_QUEUE_LIMIT * 2;
    let req = Request::CreateProcess(spec(&["echo", "z", &total.to_string(), "0"]));
    write_frame(&mut wr, &Frame::json(Kind::Request, 0, 1, &req))
        .await
        .unwrap();
    let created = reader.next(&mut skipped).await.unwrap().unwrap();
    assert_eq!((created.kind, created.id), (Kind::Response, 1));
    let Response::Created(Created { handle }) = created.parse().unwrap() else {
        panic!("not created");
    };
    let out = stream_id(handle, StdioStream::Stdout);
    write_frame(&mut wr, &Frame::window(out, u32::MAX))
        .await
        .unwrap();
    let start = Request::Start(ProcessRef { handle });
    write_frame(&mut wr, &Frame::json(Kind::Request, 0, 2, &start))
        .await
        .unwrap();

    // It does not read; the pod carries on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    timeout(T, pod.owner.ping()).await.unwrap().unwrap();
    let m = pod.member().await;
    let (o, _) = timeout(T, echo(&m, "m", 3, 0)).await.unwrap();
    assert_eq!(o, b"mmm");

    // What it gets is cut short, and then the connection ends.
    let mut got = 0;
    let rd = reader.get_mut();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = timeout(T, rd.read(&mut buf)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    assert!(
        got < agent::share::MEMBER_QUEUE_LIMIT + (4 << 20),
        "got {got} of {total} bytes"
    );
}

/// A member by hand: connects and says hello with `version`.
async fn raw_member(
    pod: &Pod,
    version: u32,
) -> (
    FrameReader<tokio::net::unix::OwnedReadHalf>,
    tokio::net::unix::OwnedWriteHalf,
    Frame,
) {
    let sock = UnixStream::connect(&pod.path).await.unwrap();
    let (rd, mut wr) = sock.into_split();
    let hello = Hello { version, nonce: 5 };
    write_frame(&mut wr, &Frame::json(Kind::Hello, 0, 0, &hello))
        .await
        .unwrap();
    let mut reader = FrameReader::new(rd);
    let ack = reader.next(&mut 0).await.unwrap().unwrap();
    assert_eq!(ack.kind, Kind::HelloAck);
    (reader, wr, ack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_of_another_protocol_version_is_refused() {
    timeout(WHOLE, async {
        let pod = pod().await;
        let (mut reader, _wr, ack) = raw_member(&pod, PROTOCOL_VERSION + 1).await;
        assert_eq!(ack.flags, frame::FLAG_ERROR);
        assert_eq!(
            ack.parse::<WireError>().unwrap().code,
            ErrorCode::ProtocolVersion
        );
        assert!(reader.next(&mut 0).await.unwrap().is_none(), "not closed");
        pod.owner.ping().await.unwrap();
    })
    .await
    .expect("the test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_touch_the_streams_of_others() {
    timeout(WHOLE, async {
        let pod = pod().await;
        let h = pod
            .owner
            .create_process(spec(&["echo", "mine", "3", "0"]))
            .await
            .unwrap();
        pod.owner.start(h).await.unwrap();
        let (mut reader, mut wr, _) = raw_member(&pod, PROTOCOL_VERSION).await;
        let out = stream_id(h, StdioStream::Stdout);
        write_frame(&mut wr, &Frame::window(out, 1000))
            .await
            .unwrap();
        let input = Frame {
            kind: Kind::Data,
            flags: 0,
            id: stream_id(h, StdioStream::Stdin),
            payload: b"intruder".to_vec(),
        };
        write_frame(&mut wr, &input).await.unwrap();
        // Forwarded in order: once the ping is answered the guest had the frames above.
        write_frame(&mut wr, &Frame::json(Kind::Request, 0, 1, &Request::Ping))
            .await
            .unwrap();
        let pong = reader.next(&mut 0).await.unwrap().unwrap();
        assert_eq!((pong.kind, pong.id, pong.flags), (Kind::Response, 1, 0));
        assert!(
            !pod.guest_saw(&format!("window {h}")),
            "credit was forwarded"
        );
        // The owner's process is untouched: its output is the owner's, stdin saw nothing.
        let mut o = pod.owner.stdout(h);
        assert_eq!(o.read_to_end().await, b"mineminemine");
        assert!(pod.guest_saw(&format!("window {h}")));
    })
    .await
    .expect("the test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_the_share_disconnects_members_only() {
    timeout(WHOLE, async {
        let pod = pod().await;
        let m = pod.member().await;
        m.ping().await.unwrap();
        pod.share.abort();
        timeout(T, m.closed()).await.unwrap();
        pod.owner.ping().await.unwrap();
        let (o, s) = echo(&pod.owner, "o", 2, 1).await;
        assert_eq!((o, s.code), (b"oo".to_vec(), Some(1)));
        // Sharing again works.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("again.sock");
        let _again = pod.owner.share(UnixListener::bind(&path).unwrap());
        let sock = UnixStream::connect(&path).await.unwrap();
        let m = timeout(T, Client::connect(sock)).await.unwrap().unwrap();
        let (o, s) = echo(&m, "m", 2, 2).await;
        assert_eq!((o, s.code), (b"mm".to_vec(), Some(2)));
    })
    .await
    .expect("the test timed out");
}
