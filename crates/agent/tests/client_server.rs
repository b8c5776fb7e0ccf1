//! The client against a small in-test guest built from the server helpers: handshake, calls,
//! error mapping, stdio with flow control, and a reconnect with stale bytes in the channel.

use agent::frame::{FrameReader, Kind};
use agent::server::{handshake, write_loop, Incoming, Outbox};
use agent::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// A fake guest: answers ping, fails create_process with ExecutableNotFound for "/nope",
/// otherwise "creates" handle 5 whose stdout produces `total` bytes once credit allows, and
/// echoes stdin to stderr.
async fn fake_guest(io: DuplexStream, total: usize) {
    let (rd, wr) = tokio::io::split(io);
    let mut reader = FrameReader::new(rd);
    let (outbox, rx) = Outbox::new();
    tokio::spawn(write_loop(rx, wr));
    handshake(
        &mut reader,
        &outbox,
        HelloAck {
            version: 0,
            nonce: 0,
            kernel: "test".into(),
            processes: vec![],
        },
    )
    .await
    .unwrap();
    let out_id = stream_id(5, StdioStream::Stdout);
    let err_id = stream_id(5, StdioStream::Stderr);
    let in_id = stream_id(5, StdioStream::Stdin);
    let mut sent = 0usize;
    let mut credit = 0usize;
    let mut max_credit_seen = 0usize;
    let mut skipped = 0;
    while let Ok(Some(frame)) = reader.next(&mut skipped).await {
        match Incoming::from_frame(frame) {
            Incoming::Request { id, request } => {
                let reply = match request {
                    Ok(Request::Ping) => Ok(Response::Ok),
                    Ok(Request::CreateProcess(cp)) if cp.process.args[0] == "/nope" => Err(
                        WireError::new(ErrorCode::ExecutableNotFound, "/nope: no such file"),
                    ),
                    Ok(Request::CreateProcess(_)) => {
                        outbox.window(in_id, 8);
                        Ok(Response::Created(Created { handle: 5 }))
                    }
                    Ok(Request::Wait(_)) => Ok(Response::Exited(ExitStatus {
                        code: Some(max_credit_seen as i32),
                        ..ExitStatus::default()
                    })),
                    Ok(_) => Err(WireError::new(ErrorCode::Unsupported, "no")),
                    Err(e) => Err(e),
                };
                outbox.reply(id, reply);
            }
            Incoming::Window { stream, credit: c } if stream == out_id => {
                credit += c as usize;
                max_credit_seen = max_credit_seen.max(credit);
                let n = credit.min(total - sent);
                if n > 0 {
                    sent += n;
                    credit -= n;
                    outbox.data(out_id, vec![b'x'; n], sent == total);
                }
            }
            Incoming::Data { stream, bytes, eof } if stream == in_id => {
                outbox.window(in_id, bytes.len() as u32);
                outbox.data(err_id, bytes, eof);
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn calls_errors_and_flow_controlled_stdio() {
    let (host, guest) = tokio::io::duplex(4096);
    let total = 3 * client::OUTPUT_WINDOW as usize + 17;
    tokio::spawn(fake_guest(guest, total));
    let c = Client::connect(host).await.unwrap();
    assert_eq!(c.hello().kernel, "test");
    c.ping().await.unwrap();

    let spec = |a: &str| CreateProcess {
        container: "c".into(),
        rootfs: None,
        hostname: None,
        readonly_rootfs: false,
        privileged: false,
        mounts: vec![],
        remove_stubs: false,
        own_network: false,
        process: ProcessSpec {
            args: vec![a.into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let err = c.create_process(spec("/nope")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ExecutableNotFound));
    assert!(c
        .kill(1, 9, false)
        .await
        .unwrap_err()
        .to_string()
        .contains("kill"));

    let h = c.create_process(spec("/bin/x")).await.unwrap();
    let mut out = c.stdout(h);
    let mut err_stream = c.stderr(h);
    // Read slowly: the guest must never have more than the window outstanding.
    let mut got = 0;
    let mut buf = vec![0u8; 1000];
    loop {
        let n = out.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, total);

    let mut stdin = c.stdin(h);
    let input: Vec<u8> = (0..100u8).collect();
    stdin.write_all(&input).await.unwrap();
    stdin.close().await.unwrap();
    assert_eq!(err_stream.read_to_end().await, input);

    let status = c.wait(h).await.unwrap();
    assert!(
        u32::try_from(status.code.unwrap()).unwrap() <= client::OUTPUT_WINDOW,
        "credit overrun: {status:?}"
    );
}

#[tokio::test]
async fn reconnect_skips_stale_bytes() {
    // Stale bytes of an earlier session still queued in the channel: a partial frame that
    // announces a long payload, and an old HelloAck with another nonce.
    let mut stale = Vec::new();
    frame::Frame {
        kind: Kind::Data,
        flags: 0,
        id: 1,
        payload: vec![0; 500],
    }
    .encode(&mut stale);
    stale.truncate(60);
    let old = HelloAck {
        version: 1,
        nonce: 42,
        kernel: "old".into(),
        processes: vec![],
    };
    frame::Frame::json(Kind::HelloAck, 0, 0, &old).encode(&mut stale);

    let (guest_side, guest) = tokio::io::duplex(4096);
    tokio::spawn(fake_guest(guest, 10));
    let (client_side, proxy) = tokio::io::duplex(4096);
    tokio::spawn(async move {
        let (mut pr, mut pw) = tokio::io::split(proxy);
        let (mut gr, mut gw) = tokio::io::split(guest_side);
        let to_guest = async {
            let _ = tokio::io::copy(&mut pr, &mut gw).await;
        };
        let to_client = async {
            pw.write_all(&stale).await.unwrap();
            let _ = tokio::io::copy(&mut gr, &mut pw).await;
        };
        tokio::join!(to_guest, to_client);
    });
    let c = Client::connect(client_side).await.unwrap();
    assert_eq!(c.hello().kernel, "test");
    c.ping().await.unwrap();
}
