//! The web client in a real browser (headless Chromium from Debian, driven over WebDriver):
//! two users on different nodes register, chat, see each other online, watch the ticks turn to
//! read, send an image, and keep chatting through the death of a node. Screenshots of each
//! screen go to target/web-screenshots/.

mod browser;
mod two_users;
