//! Measures `attach` and `detach` (bridge, tap, rules already warm) and a cold first attach.
//! Run as root inside a scratch namespace, e.g.
//! `ip netns add lat && ip netns exec lat cargo run -p net --example attach_latency; ip netns del lat`.

use std::time::Instant;

fn main() {
    let root = std::env::temp_dir().join(format!("net-latency-{}", std::process::id()));
    let nets = net::Networks::open(&root).expect("open state");
    let t = Instant::now();
    nets.attach("warm", None, net::DEFAULT_NETWORK)
        .expect("attach");
    println!(
        "cold attach (bridge + rules + tap): {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let n = 20;
    let (mut attach, mut detach) = (Vec::new(), Vec::new());
    for i in 0..n {
        let id = format!("c{i}");
        let t = Instant::now();
        nets.attach(&id, None, net::DEFAULT_NETWORK)
            .expect("attach");
        attach.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        nets.release(&id).expect("release");
        detach.push(t.elapsed().as_secs_f64() * 1e3);
    }
    attach.sort_by(f64::total_cmp);
    detach.sort_by(f64::total_cmp);
    println!("attach: median {:.1} ms over {n}", attach[n / 2]);
    println!("release: median {:.1} ms over {n}", detach[n / 2]);
    nets.release("warm").expect("release");
    let _ = std::fs::remove_dir_all(&root);
}
