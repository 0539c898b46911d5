# SPDX-License-Identifier: MIT
# bench/plot.gp - pages/s against vCPU threads, one line per front-end, from the table that
# bench/run.sh writes (columns: vcpus, then one per front-end and setting: floor, bare loops,
# self, handler, with fault-around, handler with a reader / a userfaultfd per vCPU).
# Usage: gnuplot -e "data='plot.dat'; outfile='bench.png'" bench/plot.gp
set terminal pngcairo size 1000,640 noenhanced
set output outfile
set title "pagein bench: first touch of 4 KiB pages, one page per fault unless 'around auto'"
set xlabel "vCPU threads"
set ylabel "pages/s (all vCPUs)"
set logscale x 2
set xtics (1, 2, 4, 8)
set xrange [0.8:10]
set format y "%.0s%c"
set key outside right
set grid
plot for [i=2:10] data using 1:i with linespoints lw 2 title columnheader(i)
