#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "aws")]
mod breaker;
mod error;
#[cfg(feature = "aws")]
mod kms;
pub mod managed;
mod ring;

#[cfg(feature = "aws")]
pub use breaker::{BreakerConfig, BreakerState};
pub use error::{Error, Result};
#[cfg(feature = "aws")]
pub use kms::{
    KmsClient, KmsConfig, KmsConfigBuilder, KmsSigner, KmsSignerBuilder, WrappedKey,
    WrappedKeyBlob, wrap_new_key,
};
pub use ring::{KeyInfo, KeyRing, KeyRingWatch, KeyState, Schedule, TickReport};
