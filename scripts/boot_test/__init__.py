"""The boot test (`make boot-test`): scripts/boot_test/__main__.py says what it does."""
