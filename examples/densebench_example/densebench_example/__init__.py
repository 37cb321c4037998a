"""densebench-example: the tutorial plugin of docs/writing-a-plugin.md."""
