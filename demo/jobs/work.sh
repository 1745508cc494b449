#!/bin/sh
# A demo job: $1 is its index, $2 the site its pilot is at ($$(GLIDEIN_Site)).
lines=$(wc -l < input.txt)
sleep 2
echo "alice job $1 ran at $2 with $lines input lines"
echo "result of job $1" > "result.$1.txt"
