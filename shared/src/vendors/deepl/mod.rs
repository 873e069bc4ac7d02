//! DeepL's REST API (`/v2/translate`, `/v2/languages`).
