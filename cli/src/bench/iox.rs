//! iceoryx2 0.10 over its IPC service: one publish-subscribe service of
//! `[u8]` slices per direction (streaming uses one, ping-pong both), plus
//! one event service per direction for the blocking mode (publish, then
//! notify; the receiver polls, then waits on its listener).
//!
//! Everything is created after the fork, in each process, under names
//! unique to the session.

use std::time::{Duration, Instant};

use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::{BackpressureAction, BackpressureInfo};
use iceoryx2::prelude::*;

use super::harness::{aborted, spin_step, unique_name, Endpoint, Mode, Transport};

pub struct Iceoryx2;

/// Service names of one session.
pub struct IoxNames {
    down: String,
    up: String,
}

type Pub = Publisher<ipc::Service, [u8], ()>;
type Sub = Subscriber<ipc::Service, [u8], ()>;

pub struct IoxEnd {
    // Ports first: fields drop in order, and the node goes last.
    publisher: Pub,
    subscriber: Sub,
    notifier: Notifier<ipc::Service>,
    listener: Listener<ipc::Service>,
    spin: bool,
    _node: Node<ipc::Service>,
}

/// Samples a subscriber may queue: about 1 MiB in flight, like the rings.
fn depth(size: usize) -> usize {
    ((1 << 20) / size.max(1)).clamp(16, 1024)
}

fn e<E: std::fmt::Debug>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |err| format!("{what}: {err:?}")
}

fn service_name(s: &str) -> Result<ServiceName, String> {
    ServiceName::new(s).map_err(e("service name"))
}

impl Transport for Iceoryx2 {
    type Setup = IoxNames;
    type End = IoxEnd;
    fn name(&self) -> &'static str {
        "iceoryx2"
    }
    fn stream_mode(&self) -> Mode {
        // Publish-subscribe has no blocking receive: stream by polling.
        Mode::Spin
    }
    fn child_first(&self) -> bool {
        // The child creates the services and its ports before the parent
        // opens them, so no two processes race to create a service.
        true
    }
    fn setup(&self, _size: usize) -> Result<IoxNames, String> {
        set_log_level(LogLevel::Fatal);
        let base = unique_name("shmpipe-bench");
        Ok(IoxNames {
            down: format!("{base}/down"),
            up: format!("{base}/up"),
        })
    }
    fn parent(&self, s: IoxNames, size: usize) -> Result<IoxEnd, String> {
        IoxEnd::new(&s.down, &s.up, size)
    }
    fn child(&self, s: IoxNames, size: usize) -> Result<IoxEnd, String> {
        IoxEnd::new(&s.up, &s.down, size)
    }
}

impl IoxEnd {
    fn new(tx: &str, rx: &str, size: usize) -> Result<IoxEnd, String> {
        let node = NodeBuilder::new()
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .map_err(e("node"))?;
        let pubsub = |name: &str| {
            node.service_builder(&service_name(name)?)
                .publish_subscribe::<[u8]>()
                .enable_safe_overflow(false)
                .history_size(0)
                .subscriber_max_buffer_size(depth(size))
                .subscriber_max_borrowed_samples(2)
                .max_publishers(1)
                .max_subscribers(1)
                .open_or_create()
                .map_err(e("publish-subscribe service"))
        };
        let event = |name: &str| {
            node.service_builder(&service_name(&format!("{name}/event"))?)
                .event()
                .open_or_create()
                .map_err(e("event service"))
        };
        let tx_service = pubsub(tx)?;
        let rx_service = pubsub(rx)?;
        let publisher = tx_service
            .publisher_builder()
            .initial_max_slice_len(size)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            // Retry while the subscriber's queue is full, but give up if
            // the watchdog killed the peer.
            .set_backpressure_handler(|_: &BackpressureInfo| {
                if aborted() {
                    BackpressureAction::DiscardDataAndFail
                } else {
                    BackpressureAction::Retry
                }
            })
            .create()
            .map_err(e("publisher"))?;
        let subscriber = rx_service
            .subscriber_builder()
            .buffer_size(depth(size))
            .create()
            .map_err(e("subscriber"))?;
        let notifier = event(tx)?
            .notifier_builder()
            .create()
            .map_err(e("notifier"))?;
        let listener = event(rx)?
            .listener_builder()
            .create()
            .map_err(e("listener"))?;
        Ok(IoxEnd {
            publisher,
            subscriber,
            notifier,
            listener,
            spin: true,
            _node: node,
        })
    }
}

impl Endpoint for IoxEnd {
    fn set_mode(&mut self, mode: Mode) -> Result<(), String> {
        self.spin = mode == Mode::Spin;
        Ok(())
    }

    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        let mut since: Option<Instant> = None;
        loop {
            let sample = self
                .publisher
                .loan_slice_uninit(msg.len())
                .map_err(e("loan"))?;
            if sample.write_from_slice(msg).send().map_err(e("send"))? > 0 {
                break;
            }
            // Delivered to nobody (so resending duplicates nothing): the
            // connection to the peer's subscriber is not up yet.
            let t0 = *since.get_or_insert_with(Instant::now);
            if t0.elapsed() > Duration::from_secs(5) || aborted() {
                return Err("send: no subscriber connected after 5 s".into());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        if !self.spin {
            self.notifier.notify().map_err(e("notify"))?;
        }
        Ok(())
    }

    #[inline]
    fn recv<R>(&mut self, len: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        let mut rounds = 0;
        loop {
            if let Some(sample) = self.subscriber.receive().map_err(e("receive"))? {
                let m = sample.payload();
                if m.len() != len {
                    return Err(format!(
                        "received a {}-byte sample, expected {len}",
                        m.len()
                    ));
                }
                return Ok(f(m));
            }
            if self.spin {
                spin_step(&mut rounds)?;
            } else {
                self.listener
                    .timed_wait(|_| {}, Duration::from_millis(100))
                    .map_err(e("listener wait"))?;
                if aborted() {
                    return Err("aborted by the watchdog".into());
                }
            }
        }
    }
}
