//! `mxwarden maintenance start|list|end`: ad hoc windows written straight into the store the
//! daemon reads (it picks them up on its next evaluation), and the configured windows beside
//! them. Exit 0 done, 1 no such open window, 2 a wrong call (unknown service, bad duration).

use crate::cli::{Status, outln};
use crate::config::Config;
use crate::maintenance::{self, Calendar, Shown, Source};
use crate::store::Store;
use crate::store::maintenance as mstore;
use anyhow::{Context, Result, bail};
use clap::Subcommand;

/// The `maintenance` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum MaintenanceCommand {
    /// Open an ad hoc window now: checks keep running, pages for these services are held.
    Start {
        /// Services (names under `services:`).
        #[arg(required = true)]
        services: Vec<String>,
        /// How long, e.g. `30m` (1m to 7d).
        #[arg(long = "for", value_name = "DURATION")]
        for_: String,
        /// Why (shown in the reminder and on the status page).
        #[arg(long)]
        reason: String,
        /// Print the window as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Windows open now and to come: the config's next occurrences and ad hoc windows.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// End an ad hoc window now.
    End {
        /// The window's id (from `start` or `list`).
        id: i64,
        /// Print the window as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `maintenance` subcommand.
pub(crate) fn run(config: &Config, command: MaintenanceCommand) -> Result<Status> {
    let now = jiff::Timestamp::now().as_millisecond();
    crate::cli::runtime()?.block_on(async {
        match command {
            MaintenanceCommand::Start { services, for_, reason, json } => {
                let known = config.known_services();
                let new =
                    maintenance::check_request(&services, &for_, &reason, &known, now).map_err(anyhow::Error::msg)?;
                let store = Store::open(&config.store)
                    .await
                    .with_context(|| format!("cannot open {}", config.store.display()))?;
                let w = mstore::start(&store, &new.services, new.starts_at, new.ends_at, &new.reason, now).await?;
                if json {
                    outln!("{}", serde_json::to_string_pretty(&w)?);
                } else {
                    outln!("window {} open for {} until {}", w.id, w.services.join(", "), time(w.ends_at));
                }
                Ok(Status::Healthy)
            }
            MaintenanceCommand::List { json } => {
                let calendar = Calendar::new(config.maintenance.clone());
                let mut listing = if config.store.exists() {
                    let store = Store::open(&config.store).await?;
                    maintenance::listing(&calendar, mstore::current(&store, now).await?, now)
                } else {
                    maintenance::Listing {
                        now: jiff::Timestamp::from_millisecond(now).map(|t| t.to_string()).unwrap_or_default(),
                        active: calendar.active(now).into_iter().map(Shown::from).collect(),
                        upcoming: calendar.upcoming(now).into_iter().map(Shown::from).collect(),
                    }
                };
                let (active, upcoming) = crate::cli::render::maintenance_occurrences(config).await;
                listing.active.extend(active.into_iter().map(Shown::from));
                listing.upcoming.extend(upcoming.into_iter().map(Shown::from));
                if json {
                    outln!("{}", serde_json::to_string_pretty(&listing)?);
                } else {
                    print_listing(&listing);
                }
                Ok(Status::Healthy)
            }
            MaintenanceCommand::End { id, json } => {
                if !config.store.exists() {
                    bail!("no store at {} yet, so no window {id}", config.store.display());
                }
                let store = Store::open(&config.store).await?;
                match mstore::end(&store, id, now).await? {
                    mstore::Ended::Now(w) => {
                        if json {
                            outln!("{}", serde_json::to_string_pretty(&w)?);
                        } else {
                            outln!("window {} for {} ended", w.id, w.services.join(", "));
                        }
                        Ok(Status::Healthy)
                    }
                    mstore::Ended::AlreadyOver(w) => {
                        eprintln!("window {} already ended at {}", w.id, time(w.ends_at));
                        Ok(Status::Unhealthy)
                    }
                    mstore::Ended::Unknown => {
                        eprintln!("no window {id}; `mxwarden maintenance list` shows the open ones");
                        Ok(Status::Unhealthy)
                    }
                }
            }
        }
    })
}

fn time(ms: i64) -> String {
    crate::units::utc_minute(ms)
}

fn print_listing(listing: &maintenance::Listing) {
    let mut t = crate::cli::output::table(["STATE", "WINDOW", "SERVICES", "STARTS", "ENDS", "WHY"]);
    let rows = listing.active.iter().map(|s| ("OPEN", s)).chain(listing.upcoming.iter().map(|s| ("next", s)));
    let mut any = false;
    for (state, s) in rows {
        any = true;
        let (window, why) = match &s.occurrence.source {
            Source::Config { name, cron } => (name.clone(), format!("config, cron \"{cron}\"")),
            Source::AdHoc { id, reason } => (format!("#{id}"), reason.clone()),
            Source::Deploy { service, deploy } => (deploy.clone(), format!("Render deploy of {service}")),
            Source::Render { id, kind, state } => (id.clone(), format!("Render maintenance: {kind} ({state})")),
        };
        t.add_row(crate::text::cells([
            state.to_string(),
            window,
            s.occurrence.services.join(", "),
            time(s.occurrence.starts_at),
            time(s.occurrence.ends_at),
            why,
        ]));
    }
    if any {
        outln!("{}", t.trim_fmt());
    } else {
        outln!("No maintenance windows.");
    }
}
