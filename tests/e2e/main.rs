//! End-to-end tests: the real `omnibox` binary, a fresh database each, real
//! HTTP and WebSocket clients.

mod assignment;
mod browser;
mod channels;
mod demo;
mod erasure;
mod faults;
mod foundation;
mod history;
mod inbound;
mod inbox;
mod media;
mod operations;
mod platform;
mod rebuild;
mod replies;
mod security;
mod support;
