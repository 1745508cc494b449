#!/bin/sh
# stand-in for the real program: prints what it was given
echo "$0 $*"
