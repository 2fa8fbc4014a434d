//! L7 HTTP and TCP proxy (tokio + hyper).
#![forbid(unsafe_code)]
