//! Fetching a vendor's file by URL into R2 without trusting the URL (to be written).
