"""Tiny architecture overrides shared by the encoder tests."""

# A 2-layer, 32-wide Whisper encoder; 50 source positions = 1 s of audio.
WHISPER_TINY = {
    "d_model": 32,
    "encoder_layers": 2,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "max_source_positions": 50,
}
