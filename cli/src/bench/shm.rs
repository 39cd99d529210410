//! shmpipe itself, through its public API: two anonymous rings (one per
//! direction) made before the fork, each end attached after it.

use std::marker::PhantomData;

use shmpipe::{
    Error, GenericBuilder, GenericConsumer, GenericPair, GenericProducer, Variant, WaitStrategy,
};

use super::harness::{spin_step, Endpoint, Mode, Transport};

/// A shmpipe ring of variant `V` with wait strategy `wait`.
pub struct Shm<V: Variant> {
    pub name: &'static str,
    pub wait: WaitStrategy,
    pub _v: PhantomData<V>,
}

impl<V: Variant> Shm<V> {
    pub fn new(name: &'static str, wait: WaitStrategy) -> Self {
        Shm {
            name,
            wait,
            _v: PhantomData,
        }
    }

    /// The library's default capacity, or more if a message needs it.
    fn capacity(size: usize) -> u64 {
        let mut cap = shmpipe::DEFAULT_CAPACITY;
        while shmpipe::max_message_for(cap) < size && cap < shmpipe::MAX_CAPACITY {
            cap *= 2;
        }
        cap
    }
}

pub struct ShmEnd<V: Variant> {
    tx: GenericProducer<V>,
    rx: GenericConsumer<V>,
    spin: bool,
}

impl<V: Variant> Transport for Shm<V> {
    type Setup = (GenericPair<V>, GenericPair<V>);
    type End = ShmEnd<V>;
    fn name(&self) -> &'static str {
        self.name
    }
    fn supports(&self, size: usize) -> Result<(), String> {
        let max = shmpipe::max_message_for(Self::capacity(size));
        if size > max {
            return Err(format!(
                "message larger than the largest ring allows ({max} bytes)"
            ));
        }
        Ok(())
    }
    fn setup(&self, size: usize) -> Result<Self::Setup, String> {
        let b = GenericBuilder::<V>::default()
            .capacity(Self::capacity(size))
            .wait(self.wait);
        let down = b.anonymous().map_err(|e| e.to_string())?;
        let up = b.anonymous().map_err(|e| e.to_string())?;
        Ok((down, up))
    }
    fn parent(&self, (down, up): Self::Setup, _size: usize) -> Result<ShmEnd<V>, String> {
        Ok(ShmEnd {
            tx: down.into_producer().map_err(|e| e.to_string())?,
            rx: up.into_consumer().map_err(|e| e.to_string())?,
            spin: false,
        })
    }
    fn child(&self, (down, up): Self::Setup, _size: usize) -> Result<ShmEnd<V>, String> {
        Ok(ShmEnd {
            tx: up.into_producer().map_err(|e| e.to_string())?,
            rx: down.into_consumer().map_err(|e| e.to_string())?,
            spin: false,
        })
    }
}

impl<V: Variant> Endpoint for ShmEnd<V> {
    fn set_mode(&mut self, mode: Mode) -> Result<(), String> {
        self.spin = mode == Mode::Spin;
        Ok(())
    }

    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        if !self.spin {
            return self.tx.send(msg).map_err(|e| format!("send: {e}"));
        }
        let mut rounds = 0;
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(Error::Full) => spin_step(&mut rounds)?,
                Err(e) => return Err(format!("try_send: {e}")),
            }
        }
    }

    #[inline]
    fn recv<R>(&mut self, len: usize, f: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        let mut f = Some(f);
        let mut take = |m: &[u8]| {
            if m.len() != len {
                return Err(format!(
                    "received a {}-byte message, expected {len}",
                    m.len()
                ));
            }
            match f.take() {
                Some(f) => Ok(f(m)),
                None => Err("message handler called twice".to_string()),
            }
        };
        if !self.spin {
            return self.rx.recv_with(take).map_err(|e| format!("recv: {e}"))?;
        }
        let mut rounds = 0;
        loop {
            match self.rx.try_recv_with(&mut take) {
                Ok(r) => return r,
                Err(Error::Empty) => spin_step(&mut rounds)?,
                Err(e) => return Err(format!("try_recv: {e}")),
            }
        }
    }
}
