#!/usr/bin/env bash
# Session 11, part int8f (limit ~55 s): part int8's fp16 b64 steps alone (pair norms off / on, twice), whether the
# pair norms may become the default for the 16-bit cells too.
INT8_STEPS=fp16 exec bash .s11/int8/run.sh "$@"
