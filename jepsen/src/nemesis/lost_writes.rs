//! Lost un-fsynced writes (placeholder until the FUSE passthrough lands in this change).

use crate::db::Db;

pub fn probe() -> Result<(), String> {
    Err("the FUSE passthrough is not built yet".into())
}

pub async fn crash(db: &Db, n: u64) -> bool {
    db.kill(n);
    false
}
