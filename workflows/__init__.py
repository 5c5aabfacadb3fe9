"""The 有呼必应 dispatch application written on the engine: org tree, users, calls, actions."""
