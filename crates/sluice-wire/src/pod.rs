//! `aya::Pod` impls for the map layouts (userspace only, feature `user`).
#![allow(unsafe_code)]
