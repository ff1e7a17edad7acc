//! One budget for the bytes of every request body buffered at once (lock routes), so many
//! concurrent large bodies cannot exhaust memory: over it, the request is answered 503 with
//! `Retry-After` instead of being read further.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ProxyError;
use crate::upstream::BoxError;

/// Permits are KiB, so a budget up to 4 TiB fits the semaphore's `u32` acquisitions.
const UNIT: usize = 1024;

/// The shared budget (`server.max-buffered-bytes`).
#[derive(Clone, Debug)]
pub struct BodyBudget {
    sem: Arc<Semaphore>,
}

/// Bytes held against the budget; released when dropped.
#[derive(Debug, Default)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    units: usize,
}

impl BodyBudget {
    /// A budget of `bytes` (rounded up to whole KiB).
    pub fn new(bytes: usize) -> Self {
        let units = bytes.div_ceil(UNIT).min(Semaphore::MAX_PERMITS);
        Self {
            sem: Arc::new(Semaphore::new(units)),
        }
    }

    /// Bytes currently free, for tests and diagnostics.
    pub fn available(&self) -> usize {
        self.sem.available_permits() * UNIT
    }

    /// Grows `r` to cover `bytes` in total, without waiting.
    fn cover(&self, r: &mut Reservation, bytes: usize) -> Result<(), ProxyError> {
        let need = bytes.div_ceil(UNIT);
        if need <= r.units {
            return Ok(());
        }
        let more = u32::try_from(need - r.units).map_err(|_| ProxyError::Overloaded)?;
        let p = self
            .sem
            .clone()
            .try_acquire_many_owned(more)
            .map_err(|_| ProxyError::Overloaded)?;
        match &mut r.permit {
            Some(held) => held.merge(p),
            None => r.permit = Some(p),
        }
        r.units = need;
        Ok(())
    }

    /// Reads a whole body of at most `limit` bytes, holding budget for what it has read (and,
    /// up front, for what `declared` announces). The bytes and their reservation go together.
    pub async fn buffer<B>(
        &self,
        body: B,
        limit: usize,
        declared: Option<u64>,
    ) -> Result<(Bytes, Reservation), ProxyError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut r = Reservation::default();
        if let Some(n) = declared {
            self.cover(&mut r, usize::try_from(n).unwrap_or(usize::MAX))?;
        }
        let mut buf = BytesMut::new();
        let mut body = std::pin::pin!(body);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| super::forward::read_error(e.into(), limit))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let total = buf.len() + data.len();
            if total > limit {
                return Err(ProxyError::BodyTooLarge(limit));
            }
            self.cover(&mut r, total)?;
            buf.extend_from_slice(&data);
        }
        Ok((buf.freeze(), r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::full;

    #[tokio::test]
    async fn bodies_hold_budget_until_dropped_and_the_excess_is_refused() {
        let b = BodyBudget::new(10 * UNIT);
        let (bytes, held) = b
            .buffer(full(vec![1u8; 6 * UNIT]), 1 << 20, None)
            .await
            .unwrap();
        assert_eq!(bytes.len(), 6 * UNIT);
        assert_eq!(b.available(), 4 * UNIT);
        let refused = b.buffer(full(vec![1u8; 5 * UNIT]), 1 << 20, None).await;
        assert!(matches!(refused, Err(ProxyError::Overloaded)));
        // A declared length is refused before any byte is read.
        let refused = b
            .buffer(full(Bytes::new()), 1 << 20, Some(5 * UNIT as u64))
            .await;
        assert!(matches!(refused, Err(ProxyError::Overloaded)));
        assert_eq!(b.available(), 4 * UNIT, "a refusal keeps nothing");
        drop(held);
        assert_eq!(b.available(), 10 * UNIT);
        let too_big = b.buffer(full(vec![0u8; 100]), 10, None).await;
        assert!(matches!(too_big, Err(ProxyError::BodyTooLarge(10))));
    }
}
