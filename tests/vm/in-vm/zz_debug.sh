. /tests/lib.sh
timeout 30 ib_read_lat -d rxe0 -R -n 200 > /tmp/s 2>&1 &
sleep 2
timeout 30 ib_read_lat -d rxe0 -R -n 200 10.77.0.1 2>&1 | tail -n 6
wait
