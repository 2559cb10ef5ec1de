#!/bin/sh
echo "run.sh $*"
