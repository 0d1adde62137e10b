//! `mxwarden-render-fake [--listen 127.0.0.1:PORT] [--key KEY] [--demo]`: serves the fake of Render's
//! API (see the library) until interrupted, printing its API URL on the first line. `--demo`
//! fills it with the demo stack (synapse, mas, vikunja, authentik, postgres).

use mxwarden_render_fake::FakeRender;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut listen = "127.0.0.1:0".to_string();
    let mut key = "rnd_demo_key".to_string();
    let mut demo = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or(listen),
            "--key" => key = args.next().unwrap_or(key),
            "--demo" => demo = true,
            other => {
                eprintln!("mxwarden-render-fake: unknown argument {other}; expected --listen ADDR, --key KEY, --demo");
                std::process::exit(2);
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mxwarden-render-fake: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    let fake = FakeRender::spawn(listener, &key);
    if demo {
        fake.demo_stack();
    }
    println!("{}", fake.api_url);
    let _ = tokio::signal::ctrl_c().await;
}
