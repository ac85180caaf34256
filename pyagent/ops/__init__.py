"""Operations: health and metrics endpoint, sd_notify, container/systemd helpers."""
