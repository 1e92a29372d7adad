static const struct op OPS[] = {{0x09000018, 0, 4, 0}, {0x09000fe0, 0, 4, 0}};
