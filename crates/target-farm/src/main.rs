//! `mxwarden-target-farm [--targets N] [--ports P] [--sides m,p]`: serves N targets per side on
//! P loopback ports (chosen by the system) until interrupted, and prints the ports on the first
//! line, space-separated. Target `n` of side `s` is `http://127.0.0.1:<ports[n % P]>/s/n`; any
//! port answers `/count` for all of them (see the library).

use mxwarden_target_farm::{Counts, spawn};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (mut targets, mut ports, mut sides) = (10_000usize, 4usize, "m,p".to_string());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--targets", Some(v)) if v.parse::<usize>().is_ok() => targets = v.parse().unwrap_or(targets),
            ("--ports", Some(v)) if v.parse::<usize>().is_ok_and(|p| p > 0) => ports = v.parse().unwrap_or(ports),
            ("--sides", Some(v)) => sides = v,
            (other, _) => {
                eprintln!("mxwarden-target-farm: bad argument {other}; expected --targets N, --ports P, --sides a,b");
                std::process::exit(2);
            }
        }
    }
    let names: Vec<&str> = sides.split(',').filter(|s| !s.is_empty()).collect();
    let counts = Counts::new(targets, &names);
    let mut bound = Vec::new();
    for _ in 0..ports {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mxwarden-target-farm: cannot listen: {e}");
                std::process::exit(1);
            }
        };
        bound.push(listener.local_addr().map(|a| a.port()).unwrap_or(0).to_string());
        spawn(listener, counts.clone());
    }
    println!("{}", bound.join(" "));
    let _ = tokio::signal::ctrl_c().await;
}
