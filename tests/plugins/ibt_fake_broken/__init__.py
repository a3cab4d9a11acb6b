"""A broken fake plugin: importing it fails, as a plugin with a missing dependency would."""
raise ImportError("ibt_fake_broken is deliberately broken (missing dependency 'nonexistent_lib')")
