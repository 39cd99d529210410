//! Request/response (`shmpipe::rpc`) between forked processes: pipelined
//! calls matched by id, late responses, and what a dead peer does to the
//! other side.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{fork_with, serial, Rng, ShmName};
use shmpipe::rpc::{self, Client, Rings};
use shmpipe::{Builder, Error};

/// Generous bound for "ends within the 20 ms liveness slice": it asserts
/// that nothing hangs, not a timing.
const BOUND: Duration = Duration::from_secs(5);
const LONG: Duration = Duration::from_secs(60);

/// The server's answer to a request body: its bytes reversed, then a tag.
fn answer(req: &[u8]) -> Vec<u8> {
    let mut v: Vec<u8> = req.iter().rev().copied().collect();
    v.extend_from_slice(b"/ok");
    v
}

fn request(seq: u64, rng: &mut Rng) -> Vec<u8> {
    let len = 8 + rng.below(300) as usize;
    let mut v = vec![0u8; len];
    v[..8].copy_from_slice(&seq.to_le_bytes());
    rng.fill(&mut v[8..]);
    v
}

fn builder() -> Builder {
    Builder::new().capacity(64 * 1024)
}

/// 100,000 requests, 1 to 64 in flight (a random depth per batch), between
/// a client and a forked server: every response matches its own request,
/// received by id or in arrival order.
#[test]
fn pipelined_calls_between_processes_all_match() {
    let _g = serial();
    let rings = Rings::anonymous(&builder()).unwrap();
    let (child, rings) = fork_with(rings, |r| {
        let mut server = r.into_server().map_err(|e| e.to_string())?;
        server.serve(answer).map_err(|e| e.to_string())?;
        if server.served() != 100_000 {
            return Err(format!("served {}", server.served()));
        }
        Ok(())
    });
    let dog = child.watchdog(Duration::from_secs(120), "rpc pipelined");
    let mut client = rings.into_client().unwrap();
    let mut rng = Rng::new(common::test_seed());
    let mut sent: HashMap<u64, Vec<u8>> = HashMap::new();
    let total = 100_000u64;
    let mut seq = 0u64;
    let mut depths = [0u64; 65];
    while seq < total {
        let depth = 1 + rng.below(64);
        depths[depth as usize] += 1;
        let batch = depth.min(total - seq);
        let mut ids = Vec::new();
        for _ in 0..batch {
            let body = request(seq, &mut rng);
            let id = client.send_request(&body).unwrap();
            assert!(sent.insert(id, body).is_none(), "id {id} reused");
            ids.push(id);
            seq += 1;
        }
        assert_eq!(client.in_flight(), batch as usize);
        // Half the batches by id in reverse order, half in arrival order.
        if rng.below(2) == 0 {
            for &id in ids.iter().rev() {
                let resp = client.wait_response_timeout(id, LONG).unwrap();
                assert_eq!(resp, answer(&sent.remove(&id).unwrap()), "id {id}");
            }
        } else {
            for _ in 0..batch {
                let (id, resp) = client.recv_response_timeout(LONG).unwrap();
                let req = sent.remove(&id).expect("response to a request in flight");
                assert_eq!(resp, answer(&req), "id {id}");
            }
        }
        assert_eq!(client.in_flight(), 0);
    }
    assert!(sent.is_empty());
    assert_eq!(client.late_responses(), 0);
    assert!(depths[1] > 0 && depths[64] > 0, "depths 1 and 64 both used");
    assert!(matches!(
        client.recv_response_timeout(LONG),
        Err(Error::Empty)
    ));
    client.close().unwrap();
    drop(dog);
    child.wait(Duration::from_secs(30)).unwrap();
}

/// A call that times out is cancelled; its late response is dropped and
/// counted, and the next call gets its own response.
#[test]
fn late_response_after_timeout_is_dropped_and_counted() {
    let (mut client, mut server) = Rings::in_process(&builder()).unwrap().split().unwrap();
    assert!(matches!(
        client.call_timeout(b"slow", Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert_eq!(client.in_flight(), 0);
    let req = server.try_next_request().unwrap();
    assert_eq!(req.body, b"slow");
    server.respond(req.id, b"too late").unwrap();
    let t = std::thread::spawn(move || {
        let req = server.next_request_timeout(LONG).unwrap();
        server.respond(req.id, &answer(&req.body)).unwrap();
        server
    });
    assert_eq!(client.call_timeout(b"fast", LONG).unwrap(), answer(b"fast"));
    assert_eq!(client.late_responses(), 1);
    let _server = t.join().unwrap();
    // Unknown ids are refused clearly.
    let e = client.wait_response_timeout(12345, LONG).unwrap_err();
    assert!(e.to_string().contains("not in flight"), "{e}");
    // Cancelled pipelined requests: their responses are counted, not returned.
    let a = client.send_request(b"a").unwrap();
    assert!(client.cancel(a));
    assert!(!client.cancel(a));
    assert!(matches!(
        client.recv_response_timeout(LONG),
        Err(Error::Empty)
    ));
}

/// postcard-typed calls, and a request body above the ring's maximum.
#[test]
fn typed_calls_and_too_large_requests() {
    let (mut client, mut server) = Rings::in_process(&builder()).unwrap().split().unwrap();
    let t = std::thread::spawn(move || {
        server
            .serve_as(|(a, b): (u32, String)| format!("{b}{a}"))
            .unwrap();
    });
    for i in 0..100u32 {
        let s: String = client.call_as_timeout(&(i, "n".to_string()), LONG).unwrap();
        assert_eq!(s, format!("n{i}"));
    }
    let max = client.max_request();
    match client.send_request(&vec![0; max + 1]) {
        Err(Error::TooLarge { len, max: m }) => assert_eq!((len, m), (max + 1, max)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(client.in_flight(), 0);
    client.close().unwrap();
    t.join().unwrap();
}

/// The server dies (SIGKILL) with calls in flight: every pending call ends
/// with `PeerDied` promptly (after the responses it did send), and the
/// error sticks.
#[test]
fn server_killed_mid_call_ends_every_pending_call() {
    let _g = serial();
    let rings = Rings::anonymous(&builder()).unwrap();
    let (child, rings) = fork_with(rings, |r| {
        let mut server = r.into_server().map_err(|e| e.to_string())?;
        // Answer 10 requests, then read one more and die mid-call.
        for _ in 0..10 {
            let req = server
                .next_request_timeout(LONG)
                .map_err(|e| e.to_string())?;
            server
                .respond(req.id, &answer(&req.body))
                .map_err(|e| e.to_string())?;
        }
        server
            .next_request_timeout(LONG)
            .map_err(|e| e.to_string())?;
        // SAFETY: dying without closing, on purpose.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        Ok(())
    });
    let dog = child.watchdog(Duration::from_secs(60), "rpc server killed");
    let mut client = rings.into_client().unwrap();
    let ids: Vec<u64> = (0..32u64)
        .map(|i| client.send_request(&i.to_le_bytes()).unwrap())
        .collect();
    let start = Instant::now();
    let mut ok = 0;
    let mut died = 0;
    for &id in &ids {
        match client.wait_response_timeout(id, LONG) {
            Ok(r) => {
                assert!(died == 0, "a response after PeerDied");
                assert_eq!(r.len(), 8 + 3);
                ok += 1;
            }
            Err(Error::PeerDied) => died += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((ok, died), (10, 22));
    assert!(start.elapsed() < BOUND, "took {:?}", start.elapsed());
    assert_eq!(client.in_flight(), 0);
    // A blocking call after the death returns at once, with the same error.
    assert!(matches!(
        client.call_timeout(b"x", LONG),
        Err(Error::PeerDied)
    ));
    drop(dog);
    assert!(child.wait(Duration::from_secs(10)).is_err(), "killed");
}

/// A server that dies while the client is blocked inside `call` (long
/// timeout): the call returns `PeerDied` well before its timeout.
#[test]
fn blocked_call_returns_when_the_server_dies() {
    let _g = serial();
    let rings = Rings::anonymous(&builder()).unwrap();
    let (child, rings) = fork_with(rings, |r| {
        let mut server = r.into_server().map_err(|e| e.to_string())?;
        server
            .next_request_timeout(LONG)
            .map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: dying without closing, on purpose.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        Ok(())
    });
    let dog = child.watchdog(Duration::from_secs(60), "rpc blocked call");
    let mut client = rings.into_client().unwrap();
    let start = Instant::now();
    // No timeout: the call waits per the wait strategy, and the server's
    // death ends it.
    assert!(matches!(client.call(b"q"), Err(Error::PeerDied)));
    assert!(start.elapsed() < BOUND, "took {:?}", start.elapsed());
    drop(dog);
    assert!(child.wait(Duration::from_secs(10)).is_err());
}

/// Each waiting method has a twin with a `_timeout` (as the rings' `recv` /
/// `recv_timeout`): the plain one waits until the other side acts, the
/// twin gives up with `Timeout` when it does not.
#[test]
fn waiting_methods_and_their_timeout_twins() {
    let (mut client, mut server) = Rings::in_process(&builder()).unwrap().split().unwrap();
    let short = Duration::from_millis(10);
    assert!(matches!(
        server.next_request_timeout(short),
        Err(Error::Timeout)
    ));
    let id = client.send_request(b"q").unwrap();
    assert!(matches!(
        client.recv_response_timeout(short),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        client.wait_response_timeout(id, short),
        Err(Error::Timeout)
    ));
    let t = std::thread::spawn(move || {
        server.wait_for_client().unwrap();
        // Answered late, so that the client's plain calls have to wait.
        let late = || std::thread::sleep(Duration::from_millis(30));
        let r = server.next_request().unwrap();
        late();
        server.respond(r.id, &answer(&r.body)).unwrap();
        let r = server.next_request().unwrap();
        late();
        server
            .respond_timeout(r.id, &answer(&r.body), LONG)
            .unwrap();
        let r = server.next_request().unwrap();
        late();
        let n: u32 = postcard::from_bytes(&r.body).unwrap();
        server.respond_as_timeout(r.id, &(n + 1), LONG).unwrap();
        let r = server.next_request().unwrap();
        late();
        server.respond(r.id, &answer(&r.body)).unwrap();
        server.serve(answer).unwrap();
        server
    });
    assert_eq!(client.wait_response(id).unwrap(), answer(b"q"));
    let id = client.send_request(b"r").unwrap();
    assert_eq!(client.recv_response().unwrap(), (id, answer(b"r")));
    let n: u32 = client.call_as(&41u32).unwrap();
    assert_eq!(n, 42);
    assert_eq!(client.call(b"s").unwrap(), answer(b"s"));
    assert_eq!(client.call_timeout(b"t", LONG).unwrap(), answer(b"t"));
    client.close().unwrap();
    let mut server = t.join().unwrap();
    assert_eq!(server.served(), 5);
    assert!(matches!(
        server.wait_for_client_timeout(short),
        Err(Error::Timeout)
    ));
}

/// Named rings: a client killed mid-call ends `serve` with `PeerDied`; the
/// server waits for the next client, which takes over the roles and gets
/// only its own responses (the dead client's are dropped as late).
#[test]
fn client_killed_server_continues_with_next_client() {
    let _g = serial();
    let name = ShmName::new("rpc");
    let mut server = rpc::listen(name.as_str(), &builder()).unwrap();
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let first = server.serve(answer);
        let died = matches!(first, Err(Error::PeerDied));
        let _ = first_tx.send(first);
        if !died {
            return None;
        }
        server.wait_for_client_timeout(LONG).unwrap();
        let second = server.serve(answer);
        Some((second, server.served()))
    });
    let n = name.as_str().to_string();
    let (c1, _) = fork_with((), move |()| {
        let mut c = rpc::connect(&n, &builder()).map_err(|e| e.to_string())?;
        for i in 0..5u64 {
            let r = c
                .call_timeout(&i.to_le_bytes(), LONG)
                .map_err(|e| e.to_string())?;
            if r != answer(&i.to_le_bytes()) {
                return Err("wrong answer".into());
            }
        }
        for i in 0..16u64 {
            c.send_request(&i.to_le_bytes())
                .map_err(|e| e.to_string())?;
        }
        // SAFETY: dying with requests in flight, on purpose.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        Ok(())
    });
    assert!(
        c1.wait(Duration::from_secs(30)).is_err(),
        "first client killed"
    );
    // The server notices (within its liveness slice) before the next client
    // comes; one that attached sooner would simply be served on.
    let first = first_rx.recv_timeout(LONG).unwrap();
    assert!(matches!(first, Err(Error::PeerDied)), "{first:?}");
    let n = name.as_str().to_string();
    let (c2, _) = fork_with((), move |()| {
        let mut c = rpc::connect(&n, &builder()).map_err(|e| e.to_string())?;
        let mut rng = Rng::new(7);
        for seq in 0..1000 {
            let req = request(seq, &mut rng);
            let r = c.call_timeout(&req, LONG).map_err(|e| e.to_string())?;
            if r != answer(&req) {
                return Err(format!("call {seq}: wrong answer"));
            }
        }
        if c.late_responses() > 16 {
            return Err(format!("{} late responses", c.late_responses()));
        }
        c.close().map_err(|e| e.to_string())
    });
    c2.wait(Duration::from_secs(60)).unwrap();
    let (second, served) = t.join().unwrap().unwrap();
    assert!(second.is_ok(), "{second:?}");
    assert!(served >= 5 + 1000, "served {served}");
}

/// An anonymous pair has no way for another client to reach the server:
/// `serve` says `PeerDied` and the client cannot be replaced.
#[test]
fn anonymous_client_killed_server_says_so() {
    let _g = serial();
    let rings = Rings::anonymous(&builder()).unwrap();
    let (child, rings) = fork_with(rings, |r| {
        let mut c: Client = r.into_client().map_err(|e| e.to_string())?;
        c.send_request(b"1").map_err(|e| e.to_string())?;
        // SAFETY: dying without closing, on purpose.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        Ok(())
    });
    let mut server = rings.into_server().unwrap();
    let start = Instant::now();
    let r = server.serve(answer);
    assert!(matches!(r, Err(Error::PeerDied)), "{r:?}");
    assert!(start.elapsed() < BOUND);
    assert!(child.wait(Duration::from_secs(10)).is_err());
    assert!(matches!(
        server.wait_for_client_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
}

/// A request without its 8-byte id (from a hostile client) is `Decode`,
/// not a panic, and the server goes on.
#[test]
fn request_without_id_is_a_decode_error() {
    let rings = Rings::in_process(&builder()).unwrap();
    let (mut raw, req_rx) = rings.req.split().unwrap();
    let (resp_tx, mut resp_rx) = rings.resp.split().unwrap();
    let mut server = shmpipe::rpc::Server::new(resp_tx, req_rx);
    raw.send(b"abc").unwrap();
    let e = server.try_next_request().unwrap_err();
    assert!(matches!(e, Error::Decode { len: 3, .. }), "{e:?}");
    let mut msg = 9u64.to_le_bytes().to_vec();
    msg.extend_from_slice(b"hi");
    raw.send(&msg).unwrap();
    let req = server.try_next_request().unwrap();
    assert_eq!((req.id, req.body.as_slice()), (9, &b"hi"[..]));
    server.respond(9, b"yo").unwrap();
    let mut buf = Vec::new();
    resp_rx.recv(&mut buf).unwrap();
    assert_eq!(&buf[8..], b"yo");
}

/// `connect_timeout` waits for a server that starts later (the names do not
/// exist yet when it is called), then calls go through; with no server it
/// ends at its deadline with `NotFound`, naming the ring it looked for.
#[test]
fn connect_timeout_waits_for_a_starting_server() {
    let _g = serial();
    let name = ShmName::new("rpc-late");
    let n = name.as_str().to_string();
    let (child, _) = fork_with((), move |()| {
        std::thread::sleep(Duration::from_millis(300));
        let mut server = rpc::listen(&n, &builder()).map_err(|e| e.to_string())?;
        server.serve(answer).map_err(|e| e.to_string())
    });
    let mut client = rpc::connect_timeout(name.as_str(), &builder(), LONG).unwrap();
    let r = client.call_timeout(b"late", LONG).unwrap();
    assert_eq!(r, answer(b"late"));
    client.close().unwrap();
    child.wait(Duration::from_secs(30)).unwrap();

    let none = ShmName::new("rpc-none");
    let start = Instant::now();
    match rpc::connect_timeout(none.as_str(), &builder(), Duration::from_millis(100)) {
        Err(Error::NotFound { name }) => assert!(name.starts_with(none.as_str()), "{name}"),
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < BOUND);
}

/// A killed server leaves `NAME.req`/`NAME.resp` behind; the next `listen`
/// takes the name over (the dead server's role locks are free) and serves
/// a new client. A `listen` on a live server's name fails with
/// `RoleTaken` and leaves that server working.
#[test]
fn listen_takes_over_a_dead_server_never_a_live_one() {
    let _g = serial();
    let name = ShmName::new("rpc-takeover");
    let n = name.as_str().to_string();
    let (server1, _) = fork_with((), move |()| {
        let mut server = rpc::listen(&n, &builder()).map_err(|e| e.to_string())?;
        server.serve(answer).map_err(|e| e.to_string())
    });
    // A client of the first server: its calls work.
    let mut c1 = rpc::connect_timeout(name.as_str(), &builder(), LONG).unwrap();
    assert_eq!(c1.call_timeout(b"one", LONG).unwrap(), answer(b"one"));
    // A live server is never taken over.
    match rpc::listen(name.as_str(), &builder()) {
        Err(Error::RoleTaken { role: "consumer" }) => {}
        other => panic!("listen on a live server's name: {other:?}"),
    }
    assert_eq!(c1.call_timeout(b"still", LONG).unwrap(), answer(b"still"));
    server1.kill();
    assert!(server1.wait(Duration::from_secs(10)).is_err());
    let req = format!("/dev/shm/{}.req", &name.as_str()[1..]);
    assert!(
        std::path::Path::new(&req).exists(),
        "the dead server left {req}"
    );
    // The old client learns of the death.
    assert!(matches!(
        c1.call_timeout(b"dead", LONG),
        Err(Error::PeerDied)
    ));
    drop(c1);
    // The next server takes the name over; a new client is served.
    let mut server2 = rpc::listen(name.as_str(), &builder()).unwrap();
    let n = name.as_str().to_string();
    let (client2, _) = fork_with((), move |()| {
        let mut c = rpc::connect_timeout(&n, &builder(), LONG).map_err(|e| e.to_string())?;
        let r = c.call_timeout(b"two", LONG).map_err(|e| e.to_string())?;
        if r != answer(b"two") {
            return Err("wrong answer".into());
        }
        c.close().map_err(|e| e.to_string())
    });
    server2.serve(answer).unwrap();
    client2.wait(Duration::from_secs(30)).unwrap();
    assert_eq!(server2.served(), 1);
    drop(server2);
    assert!(
        !std::path::Path::new(&req).exists(),
        "the new server removed its names"
    );
}
