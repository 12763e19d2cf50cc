{{ stage_tripdata('yellow') }}
