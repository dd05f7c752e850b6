#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod document;
mod error;
#[cfg(feature = "fetch")]
pub mod fetch;

pub use document::{CONTENT_TYPE, JwksDocument, JwksPublisher, JwksResponse};
pub use error::{Error, Result};
#[cfg(feature = "fetch")]
pub use fetch::{
    Clock, FetchedJwks, FetcherConfig, FetcherStatus, HttpSource, JwksFetcher, JwksSource,
    ManualClock, SystemClock,
};
