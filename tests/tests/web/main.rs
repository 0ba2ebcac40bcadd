//! The web client in a real browser (headless Chromium from Debian, driven over WebDriver):
//! two users on different nodes register, chat, see each other online, watch the ticks turn to
//! read, send an image, use a second tab, and keep chatting through the death of a node; a
//! group is made and its members changed, its history paged back by scrolling, a video and a
//! file sent. Screenshots of each screen go to target/web-screenshots/.

mod browser;
mod groups;
mod two_users;
