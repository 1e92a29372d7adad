"""Non-volatile and firmware-configuration devices (fw_cfg)."""
