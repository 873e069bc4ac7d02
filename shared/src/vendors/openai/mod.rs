//! OpenAI chat completions, used as the translation fallback.
