{{ stage_tripdata('green') }}
