module eifbake.example/go-www

go 1.19
