"""Orchestration: simulate dialogues, run the gate, grow the library round by round."""
