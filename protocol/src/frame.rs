//! Kafka framing: every request and response is a 4-byte big-endian length
//! followed by that many bytes. The length is checked before any byte of the
//! body is read, so an oversized or negative length never allocates.

/// Requests smaller than this cannot hold a request header (api key, version,
/// correlation id, client id length).
pub const MIN_REQUEST_SIZE: usize = 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {0} is negative")]
    Negative(i32),
    #[error("frame of {size} bytes is below the {MIN_REQUEST_SIZE}-byte request header")]
    TooSmall { size: usize },
    #[error("frame of {size} bytes exceeds the {max}-byte limit (socket.request.max.bytes)")]
    TooLarge { size: usize, max: usize },
}

/// Validates the 4-byte length prefix of a request frame against `max` bytes.
pub fn request_length(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let len = i32::from_be_bytes(prefix);
    if len < 0 {
        return Err(FrameError::Negative(len));
    }
    let size = len as usize;
    if size < MIN_REQUEST_SIZE {
        return Err(FrameError::TooSmall { size });
    }
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_negative_small_and_large_lengths() {
        assert_eq!(request_length((-1i32).to_be_bytes(), 100), Err(FrameError::Negative(-1)));
        assert_eq!(request_length(3i32.to_be_bytes(), 100), Err(FrameError::TooSmall { size: 3 }));
        assert_eq!(
            request_length(101i32.to_be_bytes(), 100),
            Err(FrameError::TooLarge { size: 101, max: 100 })
        );
        assert_eq!(request_length(100i32.to_be_bytes(), 100), Ok(100));
    }
}
